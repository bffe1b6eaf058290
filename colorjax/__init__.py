"""colorjax: a JAX/Flax model zoo for automatic image colorization."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# The public API is resolved lazily so that `import colorjax` stays cheap and
# submodules can import each other without import cycles through this file.
_PUBLIC = {
    "list_models": "colorjax.models",
    "create_model": "colorjax.inference.pretrained",
    "load_pretrained": "colorjax.inference.pretrained",
    "Pretrained": "colorjax.weights.loader",
    "colorize": "colorjax.inference",
    "colorize_video": "colorjax.inference.video",
    "load_exported": "colorjax.exported",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Import a public function from its submodule on first use."""
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module 'colorjax' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)


def __dir__() -> list[str]:
    """List the public API for tab completion."""
    return sorted(__all__)
