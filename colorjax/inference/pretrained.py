"""The one public loader: `create_model(name, pretrained=...)` and `load_pretrained(...)`.

Both return a :class:`Pretrained` (model, variables, meta): from weights named in a manifest
(``arch.tag``, an alias, or a bare architecture for its default tag), a ``.safetensors`` file,
a training run folder (its checkpoint, read by ``train/run.py``), or, for ``create_model``
without pretrained weights, a seeded random initialisation. The registry's
``colorjax.models.build_model`` builds the bare ``nn.Module``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from colorjax.models import build_model
from colorjax.train.run import load_run
from colorjax.weights.fit import init_variables
from colorjax.weights.loader import (
    Pretrained,
    build_checked,
    load_published,
    load_published_as,
    split_name,
)
from colorjax.weights.manifest import ManifestLike
from colorjax.weights.resolve import looks_like_path

# Where a bare architecture is initialised when nothing else says: sizes are free for these
# convolutional nets (parameters do not depend on them) as long as the stride divides them.
INIT_SIZE = 64


def load_pretrained(
    name_or_path: str | os.PathLike | None = None,
    *,
    family: str | None = None,
    manifest: ManifestLike = None,
    step: int | None = None,
    ema: bool = True,
    **fetch: Any,
) -> Pretrained:
    """(model, variables, meta) for a manifest name, a .safetensors file, a run folder, or None.

    None picks the default weights (of `family` if given). A run folder loads its latest
    checkpoint (or `step`), as the debiased EMA unless ema=False. `fetch` (retries, backoff,
    timeout, progress, env, bundled_dir) tunes downloads.
    """
    if name_or_path is not None and Path(os.fspath(name_or_path)).is_dir():
        return load_run(Path(name_or_path), step, ema)
    return load_published(name_or_path, family=family, manifest=manifest, **fetch)


def create_model(
    name: str,
    pretrained: bool | str | os.PathLike = False,
    *,
    manifest: ManifestLike = None,
    seed: int = 0,
    **overrides: Any,
) -> Pretrained:
    """Model `name` with its variables (timm style): always a Pretrained(model, variables, meta).

    pretrained: False -> a random initialisation from `seed` (meta['pretrained'] is False);
    True -> the tag in `name` ('arch.tag') or the architecture's default tag; a tag string ->
    'arch.tag'; a path -> that weights file or run folder loaded into `name`'s architecture.
    `overrides` go to the constructor (e.g. dtype='bfloat16'); with weights they may change
    nothing the parameters depend on.
    """
    arch, tag = split_name(name)
    if pretrained is False or pretrained is None:
        model = build_model(arch, **overrides)
        meta = {
            "name": None,
            "model": arch,
            "overrides": dict(overrides),
            "working_size": INIT_SIZE,
            "pretrained": False,
        }
        return Pretrained(model, init_variables(model, INIT_SIZE, seed), meta)
    if not isinstance(pretrained, bool) and looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if path.is_dir():
            run = load_run(path, None, True)
            meta = {**run.meta, "model": arch, "overrides": {**run.meta["overrides"], **overrides}}
            return build_checked(arch, meta["overrides"], run.variables, meta, str(path))
    return load_published_as(arch, tag, pretrained, manifest=manifest, **overrides)


__all__ = ["INIT_SIZE", "Pretrained", "create_model", "load_pretrained"]
