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

import numpy as np

from colorjax.errors import ConfigError, WeightsError
from colorjax.weights import download
from colorjax.weights.fileformat import flatten_tree, load_weights
from colorjax.weights.manifest import (
    ManifestLike,
    PretrainedCfg,
    default_entry,
    get_entry,
    get_tagged,
)


class Pretrained(NamedTuple):
    """A model with its weights: unpacks as `model, variables, meta = load_pretrained(...)`."""

    model: Any
    variables: dict[str, Any]
    meta: dict[str, Any]


def looks_like_path(name_or_path: str | os.PathLike) -> bool:
    """Return True when the argument is meant as a file path rather than a manifest name."""
    text = os.fspath(name_or_path)
    return (
        isinstance(name_or_path, os.PathLike)
        or text.endswith(".safetensors")
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or os.path.exists(text)
    )


def resolve_weights(
    name_or_path: str | os.PathLike | PretrainedCfg | None = None,
    manifest: ManifestLike = None,
    *,
    family: str | None = None,
    **fetch: Any,
) -> Path:
    """A verified local .safetensors path for a manifest name, a cfg, a file path, or None."""
    if isinstance(name_or_path, PretrainedCfg):
        return download.resolve_entry(name_or_path, **fetch)
    if name_or_path is not None and looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} does not exist (or is not a file); check the path"
            )
        return path
    if name_or_path is None:
        cfg = default_entry(family, manifest)
    else:
        cfg = get_entry(str(name_or_path), manifest)
    return download.resolve_entry(cfg, **fetch)


def abstract_variables(model: Any, working_size: int) -> dict[str, Any]:
    """Return the shapes model.init would create, without computing anything."""
    import jax
    import jax.numpy as jnp

    stride = int(getattr(model, "stride", 1) or 1)
    size = working_size if working_size % stride == 0 else stride * max(1, working_size // stride)
    key = jax.random.PRNGKey(0)
    sample = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": key, "dropout": key}, x), sample)


def check_variables(
    model: Any, variables: Mapping[str, Any], working_size: int, *, model_name: str = "the model"
) -> None:
    """Raise WeightsError unless every parameter's path and shape matches model.init's."""
    abstract = abstract_variables(model, working_size)
    expected = {k: tuple(v.shape) for k, v in flatten_tree(abstract).items()}
    actual = {k: tuple(np.shape(v)) for k, v in flatten_tree(variables).items()}
    missing = sorted(set(expected) - set(actual))
    # A generator-only GAN file is enough for inference: the discriminator may be left out whole.
    disc = [k for k in expected if k.startswith("params/discriminator/")]
    if disc and all(k in missing for k in disc):
        missing = [k for k in missing if not k.startswith("params/discriminator/")]
    unexpected = sorted(set(actual) - set(expected))
    wrong = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    if not (missing or unexpected or wrong):
        return
    details = (
        [f"missing {k} {expected[k]}" for k in missing[:3]]
        + [f"unexpected {k} {actual[k]}" for k in unexpected[:3]]
        + [f"{k}: file {actual[k]} vs model {expected[k]}" for k in wrong[:3]]
    )
    raise WeightsError(
        f"weights do not fit {model_name}: {len(missing)} missing, {len(unexpected)} unexpected, "
        f"{len(wrong)} wrong-shape parameters ({'; '.join(details)}). The file is for another "
        "architecture or configuration; use weights made for this model"
    )


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
    path: Path, name: str | None, arch: str | None, overrides: Mapping[str, Any]
) -> Pretrained:
    """Load a weights file into its model (arch/overrides override the file's own)."""
    variables, meta = load_weights(path)
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
    loaded = _from_file(path, name, None, {})
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
        return _from_file(path, None, arch, overrides)
    if isinstance(pretrained, bool):
        cfg = get_tagged(arch, tag, manifest) if tag else get_entry(arch, manifest)
    else:
        cfg = get_tagged(arch, str(pretrained), manifest)
    if cfg.model != arch:
        raise WeightsError(f"weights {cfg.name!r} are for {cfg.model!r}, not {arch!r}")
    path = resolve_weights(cfg, manifest)
    loaded = _from_file(path, cfg.name, arch, overrides)
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
    "abstract_variables",
    "check_variables",
    "create_model",
    "load_pretrained",
    "load_run",
    "resolve_weights",
]
