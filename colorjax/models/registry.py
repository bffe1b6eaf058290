"""Model registry: named variants, construction with overrides, prediction, size and cost."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.errors import ConfigError
from colorjax.models.colornet import ColorNet
from colorjax.models.deepcolorization import DeepColorization
from colorjax.models.zhang import ZhangECCV16, ZhangSIGGRAPH17

FAMILIES: dict[str, type[nn.Module]] = {
    "colornet": ColorNet,
    "deepcolorization": DeepColorization,
    "zhang-eccv16": ZhangECCV16,
    "zhang-siggraph17": ZhangSIGGRAPH17,
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A named model variant: family, head and the constructor kwargs that define it."""

    name: str
    family: str
    head: str
    description: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    """Add a variant to the registry; its family and kwargs are checked now, not at use."""
    if spec.family not in FAMILIES:
        raise ConfigError(
            f"model {spec.name!r} has unknown family {spec.family!r}; "
            f"choose one of {sorted(FAMILIES)}."
        )
    if spec.name in _REGISTRY and not overwrite:
        raise ConfigError(
            f"model {spec.name!r} is already registered; pick another name or pass overwrite=True."
        )
    _check_keys(FAMILIES[spec.family], spec.kwargs, spec.name)
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of every registered model, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The ModelSpec registered under `name`; ConfigError listing the names if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; registered models: {', '.join(_REGISTRY)}."
        ) from None


def _allowed_keys(cls: type[nn.Module]) -> list[str]:
    """Constructor fields a user may set (Flax's own parent/name are excluded)."""
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")]


def _check_keys(cls: type[nn.Module], kwargs: Mapping[str, Any], model_name: str) -> None:
    """Raise ConfigError naming the bad keys and the valid ones."""
    allowed = _allowed_keys(cls)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown override(s) {unknown} for model {model_name!r} ({cls.__name__}); "
            f"valid keys: {', '.join(allowed)}."
        )


def _normalise_value(key: str, value: Any) -> Any:
    """Make config values usable as module attributes (JSON lists -> tuples, dtype names)."""
    if key == "dtype":
        try:
            return jnp.dtype(value)
        except TypeError:
            raise ConfigError(f"unknown dtype {value!r}; use 'float32' or 'bfloat16'.") from None
    if isinstance(value, list):
        # Flax module attributes must be hashable; configs loaded from JSON carry lists.
        return tuple(value)
    return value


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model `name`, with constructor overrides (e.g. dtype='bfloat16')."""
    spec = get_spec(name)
    cls = FAMILIES[spec.family]
    _check_keys(cls, overrides, name)
    kwargs = {**spec.kwargs, **overrides}
    return cls(**{k: _normalise_value(k, v) for k, v in kwargs.items()})


def model_head(model: nn.Module) -> str:
    """'classification', 'regression' or 'gan' for a model built by this package."""
    if isinstance(model, DeepColorization):
        return "gan"
    return getattr(model, "head", "regression")


def predict_ab(*args: Any, **kwargs: Any) -> jax.Array:
    """Thin re-export of colorjax.inference.predict_ab (its home), kept for bench's call sites."""
    from colorjax.inference.predict import predict_ab as _predict_ab

    return _predict_ab(*args, **kwargs)


def count_params(tree: Any) -> int:
    """Total number of scalars in a pytree of arrays or ShapeDtypeStructs (e.g. variables)."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


def abstract_variables(model: nn.Module, resolution: int = 256) -> Any:
    """Shapes of `model.init` at `resolution` without allocating or computing anything."""
    x = jax.ShapeDtypeStruct((1, resolution, resolution, 1), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)


def param_breakdown(model: nn.Module, resolution: int | None = None) -> dict[str, int]:
    """{'total': n} plus {'generator', 'discriminator'} for GANs; counted from abstract init."""
    size = resolution or max(model.stride, 64)
    params = abstract_variables(model, size)["params"]
    counts = {"total": count_params(params)}
    if isinstance(model, DeepColorization):
        counts["generator"] = count_params(params["generator"])
        counts["discriminator"] = count_params(params["discriminator"])
    return counts


def _cost_flops(cost: Any) -> float:
    """Read 'flops' from compiled.cost_analysis(): a dict, or a list of dicts in older JAX."""
    if isinstance(cost, (list, tuple)):
        return float(sum(c.get("flops", 0.0) for c in cost if c))
    if not cost or "flops" not in cost:
        raise RuntimeError("XLA cost analysis reported no 'flops' for this backend.")
    return float(cost["flops"])


def forward_flops(model: nn.Module, resolution: int = 256, batch: int = 1) -> float:
    """XLA-counted FLOPs of one eval forward pass at resolution^2 (GANs: the generator only)."""
    x = jax.ShapeDtypeStruct((batch, resolution, resolution, 1), jnp.float32)
    variables = abstract_variables(model, resolution)

    def forward(v: Any, l_norm: jax.Array) -> jax.Array:
        return model.apply(v, l_norm, train=False)

    compiled = jax.jit(forward).lower(variables, x).compile()
    return _cost_flops(compiled.cost_analysis())


_TINY = {
    "low_features": (16, 32, 64, 128),
    "mid_features": (128, 64),
    "global_features": (64, 64, 128, 128),
    "global_dense": (256, 128, 64),
    "fusion_features": 64,
    "decoder_features": (64, 32, 16),
}
_SMALL = {
    "low_features": (32, 64, 128, 256),
    "mid_features": (256, 128),
    "global_features": (128, 128, 256, 256),
    "global_dense": (512, 256, 128),
    "fusion_features": 128,
    "decoder_features": (128, 64, 64),
}
_BASE: dict[str, Any] = {}  # ColorNet defaults are the Iizuka et al. widths

for _spec in (
    ModelSpec(
        "colornet-tiny",
        "colornet",
        "regression",
        "ColorNet, tiny widths, ab regression; trains on a laptop CPU at 64 px",
        {"head": "regression", **_TINY},
    ),
    ModelSpec(
        "colornet-tiny-cls",
        "colornet",
        "classification",
        "ColorNet, tiny widths, logits over the in-gamut ab bins (annealed-mean decoding)",
        {"head": "classification", **_TINY},
    ),
    ModelSpec(
        "colornet-small-cls4",
        "colornet",
        "classification",
        "ColorNet, small widths, ab-bin logits at H/4 (Zhang et al.), upsampled after decoding",
        {"head": "classification", "head_stride": 4, **_SMALL},
    ),
    ModelSpec(
        "colornet-base",
        "colornet",
        "regression",
        "ColorNet with Iizuka et al. 2016 widths, ab regression",
        {"head": "regression", **_BASE},
    ),
    ModelSpec(
        "colornet-base-cls",
        "colornet",
        "classification",
        "ColorNet with Iizuka et al. 2016 widths, Zhang et al. 2016 ab-bin classification",
        {"head": "classification", **_BASE},
    ),
    ModelSpec(
        "deepcolorization-small",
        "deepcolorization",
        "gan",
        "pix2pix GAN, U-Net ngf=16 with 5 downsamplings (stride 32) + PatchGAN ndf=16",
        {"ngf": 16, "ndf": 16, "num_downs": 5},
    ),
    ModelSpec(
        "deepcolorization-colornet",
        "deepcolorization",
        "gan",
        "GAN with a ColorNet generator (colornet-small-cls4) + PatchGAN ndf=32; NoGAN recipe",
        {
            "generator_arch": "colornet",
            "colornet": tuple({"head_stride": 4, **_SMALL}.items()),
            "ndf": 32,
        },
    ),
    ModelSpec(
        "deepcolorization-unet256",
        "deepcolorization",
        "gan",
        "pix2pix reference: U-Net ngf=64 with 8 downsamplings (stride 256) + 70x70 PatchGAN",
        {"ngf": 64, "ndf": 64, "num_downs": 8},
    ),
    ModelSpec(
        "zhang-eccv16",
        "zhang-eccv16",
        "regression",
        "Zhang et al. ECCV 2016: VGG-style net, 313 ab bins decoded by softmax mean inside the "
        "net; official ImageNet weights convert from PyTorch",
        {},
    ),
    ModelSpec(
        "zhang-siggraph17",
        "zhang-siggraph17",
        "regression",
        "Zhang et al. SIGGRAPH 2017: U-Net-style net taking L plus user colour hints, tanh ab; "
        "official ImageNet weights convert from PyTorch",
        {},
    ),
):
    register(_spec)
