"""Model registry mechanism: named variants, construction with overrides, task, prediction.

The variants themselves are registered beside their architecture (timm style), at the bottom
of each family module (`colornet.py`, `deepcolorization.py`, `zhang.py`) with
`register_model`; this module knows no family. Size and FLOP analysis lives in
`colorjax.models.cost`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.errors import ConfigError

# What a model's output means for training and inference; one derivation, `model_task`.
TASKS = ("regression", "classification", "gan")


@dataclasses.dataclass(frozen=True)
class ModelContract:
    """What a model needs and gives, declared by its family in one place (`Module.contract`).

    Training, inference, weights loading and evaluation read these fields and nothing else of
    a model: a new family is its module with a `contract` property plus its registration.
    """

    task: str  # 'regression' (ab out), 'classification' (ab-bin logits out) or 'gan'
    stride: int  # H and W of the input L must be multiples of it
    takes_hints: bool = False  # apply(l, hint_ab, hint_mask): user colour hints
    decodes_bins: bool = False  # apply(l, temperature=T) decodes its bins itself (GAN, ColorNet G)
    bin_logits_generator: bool = False  # a GAN whose generator also returns ab-bin logits
    palette_head: bool = False  # sows scene logits into 'aux' (ColorNet's palette loss)
    pretrained_encoder: str | None = None  # EfficientNet-Lite variant starting params['encoder']
    # Top-level subtrees of the trained params (the model's, or a GAN's generator's) that get no
    # gradient (a frozen encoder): the optimizer keeps no state for them and never updates them.
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; expected one of {TASKS}")
        if self.stride < 1:
            raise ConfigError(f"stride must be >= 1, got {self.stride}")


def model_contract(model: nn.Module) -> ModelContract:
    """The contract a model's family declares; ConfigError for a module that declares none."""
    contract = getattr(type(model), "contract", None)
    if not isinstance(contract, property):
        raise ConfigError(
            f"{type(model).__name__} declares no model contract; give it a `contract` property "
            "returning colorjax.models.ModelContract (task, stride, ...)"
        )
    return model.contract


def model_task(model: nn.Module) -> str:
    """'regression', 'classification' or 'gan', from the model's contract."""
    return model_contract(model).task


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A named model variant: its family, module class and the constructor kwargs that define it.

    The head is stored once, in `kwargs` (it shapes the parameter tree); `task` derives from it.
    """

    name: str
    family: str
    cls: type[nn.Module]
    description: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def task(self) -> str:
        """'regression', 'classification' or 'gan' (see `model_task`)."""
        return model_task(self.cls(**dict(self.kwargs)))


_REGISTRY: dict[str, ModelSpec] = {}
_FAMILIES: dict[str, type[nn.Module]] = {}


def register(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    """Add a variant to the registry; its family and kwargs are checked now, not at use."""
    known = _FAMILIES.setdefault(spec.family, spec.cls)
    if known is not spec.cls:
        raise ConfigError(
            f"model {spec.name!r}: family {spec.family!r} is {known.__name__}, "
            f"not {spec.cls.__name__}; use another family name."
        )
    if spec.name in _REGISTRY and not overwrite:
        raise ConfigError(
            f"model {spec.name!r} is already registered; pick another name or pass overwrite=True."
        )
    _check_keys(spec.cls, spec.kwargs, spec.name)
    _REGISTRY[spec.name] = spec
    return spec


def register_model(
    name: str, family: str, cls: type[nn.Module], description: str, **kwargs: Any
) -> ModelSpec:
    """Register variant `name` of `cls` (family `family`) with constructor `kwargs`."""
    return register(ModelSpec(name, family, cls, description, dict(kwargs)))


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


# Constructor fields no override sets: Flax's own, and the mesh, which only the training code
# passes (`build_model(mesh=...)`), so it never reaches a config or a weights header.
_NOT_OVERRIDES = ("parent", "name", "mesh")


def _allowed_keys(cls: type[nn.Module]) -> list[str]:
    """Constructor fields a user may set (Flax's own parent/name and the mesh are excluded)."""
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in _NOT_OVERRIDES]


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


def build_model(name: str, *, mesh: Mesh | None = None, **overrides: Any) -> nn.Module:
    """Build the registered model `name`, with constructor overrides (e.g. dtype='bfloat16').

    `mesh`: the mesh the training step shards the batch over, given to the model's layers so
    their CPU kernel-gradient loops run per device on it; None (inference, evaluation) keeps
    one loop. It changes neither parameters nor outputs, and is no override: never serialised.
    """
    spec = get_spec(name)
    _check_keys(spec.cls, overrides, name)
    kwargs = {k: _normalise_value(k, v) for k, v in {**spec.kwargs, **overrides}.items()}
    if mesh is not None:
        if not isinstance(mesh, Mesh):
            raise ConfigError(
                f"mesh must be the jax.sharding.Mesh the training step shards over, got {mesh!r}; "
                "it is passed by the training code, never set as a model override."
            )
        if "mesh" not in {f.name for f in dataclasses.fields(spec.cls)}:
            raise ConfigError(
                f"model {name!r} ({spec.cls.__name__}) takes no mesh; give the family a "
                "`mesh: Mesh | None = None` field passed to its layers, or build it without one."
            )
        kwargs["mesh"] = mesh
    return spec.cls(**kwargs)
