"""Typed experiment configs: JSON round trip, `--set a.b=value` overrides, files and presets."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any

from colorjax.color import GRAY_CHROMA
from colorjax.errors import ConfigError


@dataclasses.dataclass
class ModelConfig:
    """Which registered model to train, plus constructor overrides."""

    name: str = "colornet-tiny"
    overrides: dict = dataclasses.field(default_factory=dict)
    # A colorjax weights file or pretrained name whose params start the run (fine-tuning; for
    # a GAN, ColorNet weights start its ColorNet generator: the NoGAN recipe's pretraining).
    # A PyTorch .pth state dict of a ported model (zhang-eccv16, zhang-siggraph17) works too.
    init_weights: str | None = None


@dataclasses.dataclass
class DataConfig:
    """Where the training and evaluation images come from and how they are shaped."""

    source: str = "embedded"
    split: str = "train"
    eval_source: str | None = None  # None: the training source's eval_split
    eval_split: str = "validation"
    data_dir: str | None = None
    image_size: int = 64
    val_fraction: float = 0.0
    drop_gray_threshold: float | None = None
    num_workers: int = 0


@dataclasses.dataclass
class OptimConfig:
    """Optimizer, learning-rate schedule, clipping and EMA."""

    optimizer: str = "adam"  # adam | adamw | sgd
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # cosine (warm-up + cosine) | constant | linear
    warmup_steps: int = 0
    end_lr_fraction: float = 0.0  # final lr = learning_rate * end_lr_fraction (cosine, linear)
    constant_fraction: float = 0.0  # linear: hold lr for this fraction of steps, then decay
    b1: float = 0.9
    b2: float = 0.999
    weight_decay: float = 0.0
    grad_clip_norm: float | None = None
    ema_decay: float | None = None  # EMA of (generator) weights; None disables
    d_learning_rate: float | None = None  # GAN discriminator lr; None: same as learning_rate
    # Multiplies the learning rate of every parameter under an ``encoder`` subtree (a pretrained
    # ImageNet encoder being fine-tuned): a small step keeps what ImageNet taught it.
    encoder_lr_scale: float = 1.0


@dataclasses.dataclass
class LossConfig:
    """Loss choices for the three training modes."""

    regression: str = "l1"  # l1 | l2 | huber
    huber_delta: float = 0.1  # in normalised ab units (ab / 110)
    rebalance_lambda: float = 0.5  # Zhang et al.: mix of prior and uniform
    soft_sigma: float = 5.0  # soft-encoding Gaussian width in CIE ab units
    soft_neighbors: int = 5
    gray_chroma_threshold: float = GRAY_CHROMA  # near-gray images (color.is_near_gray): weight 0
    gan: str = "vanilla"  # vanilla | lsgan
    lambda_l1: float = 100.0
    lambda_ce: float = 0.0  # GAN with a ColorNet generator: weight of its bin cross-entropy
    # ColorNet with scene_head: weight of the palette loss (CE of the scene head's logits
    # against the photo's soft-encoded ab histogram); 0 leaves the head untrained.
    scene_weight: float = 0.0
    # zhang-eccv16 fine-tuning: classification (rebalanced CE on its own 313 bins, whose
    # centres come with the weights) | regression (`regression` loss on the decoded ab).
    zhang_head: str = "classification"
    # Regression models (DDColor): weight of DDColor's colourfulness term (losses.
    # colorfulness_loss on the predicted RGB) beside the regression loss; 0 leaves it out.
    colorfulness_weight: float = 0.0


@dataclasses.dataclass
class TrainConfig:
    """Run length, batch, precision, logging, evaluation and checkpoint cadence."""

    batch_size: int = 16  # global batch over all processes and devices
    steps: int = 1000
    seed: int = 0
    dtype: str = "float32"  # float32 | bfloat16 (compute dtype; params stay float32)
    log_every: int = 10
    eval_every: int = 0  # 0 disables evaluation (no eval data is read)
    eval_batch_size: int = 16
    eval_batches: int = 1
    checkpoint_every: int = 500
    keep: int = 3  # keep the latest N checkpoints
    keep_best: bool = True  # also keep the checkpoint with the best eval PSNR
    async_checkpoint: bool = True
    progress: bool = True
    inject_nan_step: int | None = None  # testing aid: the loss at this step becomes NaN


@dataclasses.dataclass
class ExperimentConfig:
    """A complete, work-directory-independent description of one training run."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable nested dict."""
        return _to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Build a config from a nested dict; unknown keys raise ConfigError."""
        return _from_dict(cls, data, prefix="")

    def to_json(self) -> str:
        """Serialise to an indented JSON string."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def valid_keys(cls: type = ExperimentConfig, prefix: str = "") -> list[str]:
    """List every dotted key that `--set` accepts."""
    keys = []
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            keys.extend(valid_keys(tp, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or '<root>'!r} must be a mapping, got {data!r}")
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys: "
            f"{', '.join(valid_keys(cls, prefix))}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = types_[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a JSON value to the annotated type (lists become tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if tp is Any:
        return value
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        elem = args[0] if args else Any
        return tuple(_coerce(v, elem, key) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} expects a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} expects a string, got {value!r}")
        return value
    return value


def _parse_text(text: str, tp: Any, key: str) -> Any:
    """Parse the text after `=` according to the field's annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    stripped = text.strip()
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and stripped.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_text(text, inner[0], key)
    try:
        if tp is bool:
            lowered = stripped.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if tp is int:
            return int(stripped)
        if tp is float:
            return float(stripped)
        if tp is str:
            return text
        if origin is tuple or tp is tuple:
            body = stripped.strip("()[]")
            elem = args[0] if args else str
            return tuple(_parse_text(p, elem, key) for p in body.split(",") if p.strip())
        if origin is dict or tp is dict:
            value = json.loads(stripped)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except ValueError as err:
        raise ConfigError(
            f"cannot parse override {key}={text!r} as {getattr(tp, '__name__', tp)}: {err}"
        ) from None
    return text


def _parse_literal(text: str) -> Any:
    """Best-effort literal for free-form dict entries (JSON, else plain string)."""
    try:
        return json.loads(text)
    except ValueError:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null"):
            return None
        return text


def apply_override(config: ExperimentConfig, item: str) -> ExperimentConfig:
    """Apply one `a.b=value` override in place and return the config."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.steps=100)")
    key, text = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    node: Any = config
    for i, part in enumerate(parts):
        if isinstance(node, dict):
            # Free-form mapping (model.overrides.NAME=value): value parsed as a JSON literal.
            if i != len(parts) - 1:
                node = node.setdefault(part, {})
                continue
            node[part] = _parse_literal(text)
            return config
        if not dataclasses.is_dataclass(node) or part not in _field_types(type(node)):
            raise ConfigError(
                f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}, "
                "model.overrides.NAME"
            )
        tp = _field_types(type(node))[part]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                raise ConfigError(f"config key {key!r} is a section; set one of its fields")
            setattr(node, part, _parse_text(text, tp, key))
            return config
        node = getattr(node, part)
    return config


PRESETS_DIR = Path(__file__).resolve().parent / "configs"


def list_presets() -> list[str]:
    """Names of the experiment presets shipped in the package (usable as `--config NAME`)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.py") if not p.name.startswith("_"))


def resolve_config_path(name: str | Path) -> Path:
    """An existing experiment file, else the package preset called NAME (or NAME.py)."""
    path = Path(name)
    if path.is_file():
        return path
    if len(path.parts) == 1 and path.suffix in ("", ".py") and path.stem in list_presets():
        return PRESETS_DIR / f"{path.stem}.py"
    raise ConfigError(
        f"experiment config {str(name)!r} does not exist (relative paths start at the current "
        f"folder, {Path.cwd()}); pass an experiment file such as experiments/NAME.py, or a "
        f"preset name: {', '.join(list_presets())}"
    )


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load `get_config()` from an experiment .py file or preset name; apply `--set` overrides."""
    path = resolve_config_path(path)
    if path.suffix == ".json":
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"config {str(path)!r} is not valid JSON (line {err.lineno}, column {err.colno}: "
                f"{err.msg}); fix the file or write it again with ExperimentConfig.to_json()"
            ) from None
        config = ExperimentConfig.from_dict(raw)
    else:
        module_name = f"_colorjax_experiment_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import experiment config {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as err:
            raise ConfigError(
                f"experiment config {str(path)!r} has a syntax error at line {err.lineno}: "
                f"{err.msg}; fix the file"
            ) from None
        finally:
            sys.modules.pop(module_name, None)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"{str(path)!r} defines no get_config() -> ExperimentConfig")
        config = module.get_config()
        if not isinstance(config, ExperimentConfig):
            raise ConfigError(f"get_config() in {str(path)!r} must return an ExperimentConfig")
    for item in overrides or []:
        apply_override(config, item)
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """Check value ranges a user can get wrong; raise ConfigError naming the fix."""
    t, o, lo = config.train, config.optim, config.loss
    choices = {
        "train.dtype": (t.dtype, ("float32", "bfloat16")),
        "optim.schedule": (o.schedule, ("cosine", "constant", "linear")),
        "optim.optimizer": (o.optimizer, ("adam", "adamw", "sgd")),
        "loss.regression": (lo.regression, ("l1", "l2", "huber")),
        "loss.gan": (lo.gan, ("vanilla", "lsgan")),
        "loss.zhang_head": (lo.zhang_head, ("classification", "regression")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {list(allowed)}")
    positive = {
        "train.batch_size": t.batch_size,
        "train.steps": t.steps,
        "data.image_size": config.data.image_size,
        "train.log_every": t.log_every,
        "train.checkpoint_every": t.checkpoint_every,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if o.ema_decay is not None and not 0.0 < o.ema_decay < 1.0:
        raise ConfigError(f"optim.ema_decay must be in (0, 1) or none, got {o.ema_decay}")
    # NaN passes every comparison above unnoticed and only shows as a diverged run later.
    for key, value in _flat(config.to_dict()).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
    if not o.learning_rate > 0:
        raise ConfigError(f"optim.learning_rate must be > 0, got {o.learning_rate}")
    if not lo.colorfulness_weight >= 0:
        raise ConfigError(f"loss.colorfulness_weight must be >= 0, got {lo.colorfulness_weight}")
    if not o.encoder_lr_scale >= 0:
        raise ConfigError(f"optim.encoder_lr_scale must be >= 0, got {o.encoder_lr_scale}")


def incompatible_fields(saved: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """Fields that stop a checkpoint of `saved` continuing as `new` (they change the state)."""
    checks = {
        "model.name": (saved.model.name, new.model.name),
        "model.overrides": (saved.model.overrides, new.model.overrides),
        "data.image_size": (saved.data.image_size, new.data.image_size),
        "optim.optimizer": (saved.optim.optimizer, new.optim.optimizer),
        # Only on/off matters: the value of the decay or the clip norm does not change shapes.
        "optim.ema_decay": (saved.optim.ema_decay is None, new.optim.ema_decay is None),
        "optim.grad_clip_norm": (bool(saved.optim.grad_clip_norm), bool(new.optim.grad_clip_norm)),
        "optim.encoder_lr_scale": (
            saved.optim.encoder_lr_scale == 1.0,
            new.optim.encoder_lr_scale == 1.0,
        ),
    }
    shown = {
        "optim.encoder_lr_scale": (saved.optim.encoder_lr_scale, new.optim.encoder_lr_scale),
        "optim.ema_decay": (saved.optim.ema_decay, new.optim.ema_decay),
        "optim.grad_clip_norm": (saved.optim.grad_clip_norm, new.optim.grad_clip_norm),
    }
    return [
        f"{key} {shown.get(key, pair)[0]!r} -> {shown.get(key, pair)[1]!r}"
        for key, pair in checks.items()
        if pair[0] != pair[1]
    ]


# Fields a resumed run may change freely: they shape neither the saved state nor the updates
# it continues with (train.steps extends or ends the run; the rest is logging and evaluation).
RESUME_FREE_FIELDS = frozenset(
    {
        "model.init_weights",
        "train.steps",
        "train.log_every",
        "train.eval_every",
        "train.eval_batch_size",
        "train.eval_batches",
        "train.checkpoint_every",
        "train.keep",
        "train.keep_best",
        "train.async_checkpoint",
        "train.progress",
        "data.eval_source",
        "data.eval_split",
    }
)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1} (dict-valued fields such as overrides stay whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and prefix == "":
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def trajectory_changes(saved: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """Fields that keep the state's shapes but change what the resumed steps compute.

    A resumed run is bit-identical to an uninterrupted one only when none differ (batch size,
    seed, data, learning rate, loss...). Shape-changing fields are `incompatible_fields`.
    """
    old, cur = _flat(saved.to_dict()), _flat(new.to_dict())
    shape_fields = {entry.split(" ")[0] for entry in incompatible_fields(saved, new)}
    return [
        f"{key} {old.get(key)!r} -> {cur.get(key)!r}"
        for key in sorted(set(old) | set(cur))
        if key not in RESUME_FREE_FIELDS
        and key not in shape_fields
        and old.get(key) != cur.get(key)
    ]
