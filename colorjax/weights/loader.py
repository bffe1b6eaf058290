"""The one loader: `create_model(name, pretrained=...)` and `load_pretrained(name_or_path)`.

Both return a :class:`Pretrained` (model, variables, meta) for weights named in a manifest
(``arch.tag``, an alias, or a bare architecture for its default tag), a ``.safetensors`` file,
or a training run folder (its latest checkpoint); ``create_model(name)`` without pretrained
weights is the bare architecture, as ``colorjax.models.create_model`` builds it. Every load
checks the weights' parameter tree against the model before returning.
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
        return models.create_model(arch, **overrides)
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
    model = _build(arch, overrides, str(path))
    check_variables(model, variables, meta["working_size"], model_name=f"model {arch!r} ({path})")
    meta.update(path=str(path), name=name)
    return Pretrained(model, variables, meta)


def load_run(workdir: str | os.PathLike, step: int | None = None, ema: bool = True) -> Pretrained:
    """A training run's checkpoint (its debiased EMA unless ema=False) with its model."""
    from colorjax.weights.export import load_inference_params

    config, variables = load_inference_params(workdir, step, ema=ema)
    overrides = dict(config.model.overrides)
    model = _build(config.model.name, overrides, str(workdir))
    meta = {
        "name": None,
        "model": config.model.name,
        "overrides": overrides,
        "workdir": os.fspath(workdir),
        "working_size": int(config.data.image_size),
    }
    return Pretrained(model, variables, meta)


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


def create_model(
    name: str,
    pretrained: bool | str | os.PathLike = False,
    *,
    manifest: ManifestLike = None,
    **overrides: Any,
) -> Any:
    """The model `name` (timm style); with pretrained weights a Pretrained(model, variables, meta).

    pretrained: False -> the bare nn.Module; True -> the tag in `name` ('arch.tag') or the
    architecture's default tag; a tag string -> 'arch.tag'; a path -> that weights file (or run
    folder) loaded into `name`'s architecture. `overrides` go to the constructor (e.g.
    dtype='bfloat16'); with weights they may change nothing the parameters depend on.
    """
    arch, tag = split_name(name)
    if pretrained is False or pretrained is None:
        from colorjax import models

        return models.create_model(arch, **overrides)
    if not isinstance(pretrained, bool) and looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if path.is_dir():
            loaded = load_run(path, None, True)
            return _refit(loaded, arch, overrides, str(path))
        path = resolve_weights(path)
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


def _refit(loaded: Pretrained, arch: str, overrides: Mapping[str, Any], where: str) -> Pretrained:
    """Rebuild a run's weights into `arch` (with overrides) and check they fit it."""
    model = _build(arch, {**loaded.meta["overrides"], **overrides}, where)
    check_variables(model, loaded.variables, loaded.meta["working_size"], model_name=repr(arch))
    return Pretrained(model, loaded.variables, {**loaded.meta, "model": arch})


__all__ = [
    "Pretrained",
    "create_model",
    "load_pretrained",
    "load_run",
]
