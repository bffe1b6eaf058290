"""Published weights into their model: a :class:`Pretrained` (model, variables, meta).

For weights named in a manifest (``arch.tag``, an alias, or a bare architecture for its
default tag) or a ``.safetensors`` file. Every load checks the weights' parameter tree against
the model before returning. The public ``colorjax.create_model`` / ``colorjax.load_pretrained``
(``inference/pretrained.py``) add training run folders and random initialisation on top.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from colorjax.errors import ConfigError, WeightsError
from colorjax.weights.fit import check_variables
from colorjax.weights.manifest import (
    ManifestLike,
    default_entry,
    get_entry,
    get_tagged,
)
from colorjax.weights.resolve import looks_like_path, resolve_weights
from colorjax.weights.shared import read_variables


class Pretrained(NamedTuple):
    """A model with its weights: unpacks as `model, variables, meta = load_pretrained(...)`."""

    model: Any
    variables: dict[str, Any]
    meta: dict[str, Any]


def _build(arch: str, overrides: Mapping[str, Any], where: str) -> Any:
    """The registry model, or WeightsError when these weights name one colorjax cannot build."""
    from colorjax import models

    try:
        return models.build_model(arch, **overrides)
    except ConfigError as err:
        raise WeightsError(
            f"{where} was made for model {arch!r} with overrides {dict(overrides)}, which this "
            f"colorjax cannot build ({err}); upgrade colorjax or use other weights"
        ) from err


def _from_file(
    path: Path,
    name: str | None,
    arch: str | None,
    overrides: Mapping[str, Any],
    expected_model: str | None = None,
    manifest: ManifestLike = None,
    **fetch: Any,
) -> Pretrained:
    """Load a weights file into its model (arch/overrides override the file's own).

    `expected_model` is what a manifest entry says the file holds; a file whose header names
    another model is refused rather than run as whatever it is.
    """
    variables, meta = read_variables(path, manifest, **fetch)
    if expected_model is not None and meta["model"] != expected_model:
        raise WeightsError(
            f"weights {name!r} are listed as model {expected_model!r}, but {path} holds "
            f"{meta['model']!r}; the manifest entry points at the wrong file: fix its model or "
            "its URL"
        )
    arch = arch or meta["model"]
    overrides = {**meta["overrides"], **overrides}
    meta.update(path=str(path), name=name)
    return build_checked(arch, overrides, variables, meta, str(path))


def load_published(
    name_or_path: str | os.PathLike | None = None,
    *,
    family: str | None = None,
    manifest: ManifestLike = None,
    **fetch: Any,
) -> Pretrained:
    """Pretrained(model, variables, meta) for a manifest name or a .safetensors file, or None.

    None picks the default weights (of `family` if given). `fetch` (retries, backoff, timeout,
    progress, env, bundled_dir) tunes downloads. Run folders are the training layer's
    (``colorjax.load_pretrained`` takes all three).
    """
    name = None
    if name_or_path is None:
        cfg = default_entry(family, manifest)
        name = cfg.name
    elif not looks_like_path(name_or_path):
        cfg = get_entry(str(name_or_path), manifest)
        name = cfg.name
    path = resolve_weights(cfg if name else name_or_path, manifest, **fetch)
    loaded = _from_file(path, name, None, {}, cfg.model if name else None, manifest, **fetch)
    if name is not None and cfg.temperature is not None:
        loaded.meta.setdefault("temperature", cfg.temperature)
    return loaded


def split_name(name: str) -> tuple[str, str | None]:
    """'arch.tag' -> ('arch', 'tag'); a bare architecture -> ('arch', None)."""
    arch, dot, tag = name.partition(".")
    return arch, (tag if dot else None)


def load_published_as(
    arch: str,
    tag: str | None,
    pretrained: bool | str | os.PathLike,
    *,
    manifest: ManifestLike = None,
    **overrides: Any,
) -> Pretrained:
    """Published weights loaded into architecture `arch` (timm's `pretrained=` forms).

    pretrained: True -> `tag` or the architecture's default tag; a tag string -> 'arch.tag';
    a path -> that weights file. `overrides` go to the constructor (e.g. dtype='bfloat16') and
    may change nothing the parameters depend on.
    """
    if not isinstance(pretrained, bool) and looks_like_path(pretrained):
        path = resolve_weights(Path(pretrained).expanduser())
        return _from_file(path, None, arch, overrides, None, manifest)
    if isinstance(pretrained, bool):
        cfg = get_tagged(arch, tag, manifest) if tag else get_entry(arch, manifest)
    else:
        cfg = get_tagged(arch, str(pretrained), manifest)
    if cfg.model != arch:
        raise WeightsError(f"weights {cfg.name!r} are for {cfg.model!r}, not {arch!r}")
    path = resolve_weights(cfg, manifest)
    loaded = _from_file(path, cfg.name, arch, overrides, cfg.model, manifest)
    if cfg.temperature is not None:
        loaded.meta.setdefault("temperature", cfg.temperature)
    return loaded


def build_checked(
    arch: str,
    overrides: Mapping[str, Any],
    variables: dict[str, Any],
    meta: dict[str, Any],
    where: str,
) -> Pretrained:
    """Build `arch` with `overrides` and return it with `variables` once they fit it."""
    model = _build(arch, overrides, where)
    check_variables(model, variables, meta["working_size"], model_name=f"model {arch!r} ({where})")
    return Pretrained(model, variables, meta)


__all__ = [
    "Pretrained",
    "build_checked",
    "load_published",
    "load_published_as",
    "split_name",
]
