"""Training state (params, optimizer state, step, RNG, EMA): its creation and its update rule.

The task (model, mode, optimizers, schedules) is built here from the config; the step
functions in `steps` and `finetune` compute losses and gradients and hand them to
`apply_gradients`, the one place an optimizer update and the EMA happen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from colorjax.config import ExperimentConfig, OptimConfig
from colorjax.errors import ConfigError
from colorjax.models import build_model, get_spec, model_contract
from colorjax.parallel import replicated
from colorjax.weights.backbones import lite_params
from colorjax.weights.pth_convert import load_pth_params
from colorjax.weights.resolve import resolve_weights
from colorjax.weights.shared import merge_subtrees, read_variables


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; a pytree, donated to each jitted step.

    For DeepColorization `params` holds {'generator', 'discriminator'}, `opt_state` is the
    generator's optimizer state and `d_opt_state` the discriminator's; `ema_params` (when
    enabled) is an EMA of the generator (or of the whole ColorNet).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    ema_params: Any = None
    d_opt_state: Any = None


@dataclasses.dataclass(frozen=True)
class TrainTask:
    """The static pieces of a run: model, mode, optimizers and schedules.

    A task made for inference (``make_task(config, optimizers=False)``) has no optimizers: its
    states hold parameters and their EMA only.
    """

    config: ExperimentConfig
    model: nn.Module
    mode: str  # 'regression' | 'classification' | 'gan' | 'zhang-classification'
    tx: optax.GradientTransformation | None
    schedule: Callable[[Any], Any] | None
    d_tx: optax.GradientTransformation | None = None


def make_schedule(optim: OptimConfig, total_steps: int, base_lr: float) -> optax.Schedule:
    """Warm-up (linear from 0), optional constant hold, then cosine/linear decay or constant."""
    pieces: list[optax.Schedule] = []
    boundaries: list[int] = []
    warm = max(int(optim.warmup_steps), 0)
    if warm:
        pieces.append(optax.linear_schedule(0.0, base_lr, warm))
        boundaries.append(warm)
    hold_end = max(warm, int(optim.constant_fraction * total_steps))
    if hold_end > warm:
        pieces.append(optax.constant_schedule(base_lr))
        boundaries.append(hold_end)
    decay_steps = max(total_steps - hold_end, 1)
    end = base_lr * optim.end_lr_fraction
    if optim.schedule == "cosine":
        pieces.append(
            optax.cosine_decay_schedule(base_lr, decay_steps, alpha=optim.end_lr_fraction)
        )
    elif optim.schedule == "linear":
        pieces.append(optax.linear_schedule(base_lr, end, decay_steps))
    else:
        pieces.append(optax.constant_schedule(base_lr))
    if len(pieces) == 1:
        return pieces[0]
    return optax.join_schedules(pieces, boundaries)


def encoder_mask(params: Any) -> Any:
    """True for every leaf under a subtree named ``encoder`` (the pretrained ImageNet encoder)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(getattr(k, "key", None) == "encoder" for k in path), params
    )


def make_optimizer(
    optim: OptimConfig, schedule: optax.Schedule, frozen: tuple[str, ...] = ()
) -> optax.GradientTransformation:
    """Optax optimizer with optional global-norm clipping in front and encoder lr scaling behind.

    Scaling the updates after Adam is scaling the learning rate of those parameters (Adam's
    step does not depend on the gradient's scale). The scaling stage exists only when the scale
    is not 1, so runs saved without it keep their optimizer-state structure. `frozen` top-level
    subtrees get zero updates and no optimizer state: Adam's moments of a frozen 4.8M-parameter
    encoder would be read and written every step for nothing.
    """
    tx = _base_optimizer(optim, schedule)
    if not frozen:
        return tx

    def labels(params: Any) -> Any:
        return {
            k: jax.tree_util.tree_map(lambda _, k=k: "frozen" if k in frozen else "train", v)
            for k, v in params.items()
        }

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def _base_optimizer(optim: OptimConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Adam/AdamW/SGD with clipping in front and encoder lr scaling behind (see make_optimizer)."""
    if optim.optimizer == "adam":
        base = optax.adam(schedule, b1=optim.b1, b2=optim.b2)
    elif optim.optimizer == "adamw":
        base = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    else:
        base = optax.sgd(schedule, momentum=optim.b1 or None)
    parts = [base]
    if optim.grad_clip_norm:
        parts.insert(0, optax.clip_by_global_norm(optim.grad_clip_norm))
    if optim.encoder_lr_scale != 1.0:
        parts.append(optax.masked(optax.scale(optim.encoder_lr_scale), encoder_mask))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)


ZHANG_CLASSIFICATION = "zhang-classification"


def training_mode(config: ExperimentConfig, family: str, head: str) -> str | None:
    """The step kind of zhang-eccv16's cross-entropy fine-tuning (None: the default rule)."""
    if family != "zhang-eccv16" or config.loss.zhang_head != "classification":
        return None
    if not config.model.init_weights:
        raise ConfigError(
            "zhang-eccv16 cross-entropy training needs the 313 bin centres that come with the "
            "weights: set model.init_weights=zhang-eccv16 (or a weights file), or train the "
            "decoded ab with loss.zhang_head=regression"
        )
    return ZHANG_CLASSIFICATION


def make_task(
    config: ExperimentConfig, *, optimizers: bool = True, mesh: Mesh | None = None
) -> TrainTask:
    """Build the model (in the configured compute dtype), optimizers and schedules.

    optimizers=False builds the model only: what restoring a run for inference needs. `mesh`
    is the mesh the train step will shard the batch over (pass the one given to
    `make_train_step`): the model's CPU kernel-gradient loops then run per device on it.
    """
    spec = get_spec(config.model.name)
    overrides = dict(config.model.overrides)
    overrides.setdefault("dtype", config.train.dtype)
    if "mesh" in overrides:
        raise ConfigError(
            "model.overrides.mesh: the mesh is not a model setting (training passes its own); "
            "remove it from model.overrides."
        )
    model = build_model(config.model.name, mesh=mesh, **overrides)
    mode = spec.task
    if config.loss.lambda_ce and not model_contract(model).bin_logits_generator:
        raise ConfigError(
            f"loss.lambda_ce={config.loss.lambda_ce} needs a GAN with a ColorNet generator "
            f"(generator_arch='colornet'); {config.model.name!r} has none: set loss.lambda_ce=0."
        )
    mode = training_mode(config, spec.family, mode) or mode
    if not optimizers:
        return TrainTask(config=config, model=model, mode=mode, tx=None, schedule=None)
    schedule = make_schedule(config.optim, config.train.steps, config.optim.learning_rate)
    tx = make_optimizer(config.optim, schedule, model_contract(model).frozen)
    d_tx = None
    if mode == "gan":
        d_lr = config.optim.d_learning_rate or config.optim.learning_rate
        d_tx = make_optimizer(config.optim, make_schedule(config.optim, config.train.steps, d_lr))
    return TrainTask(config=config, model=model, mode=mode, tx=tx, schedule=schedule, d_tx=d_tx)


def _init_params(task: TrainTask, rng: jax.Array) -> Any:
    """model.init's params on a dummy L batch at the configured image size."""
    size = task.config.data.image_size
    return task.model.init(rng, jnp.zeros((1, size, size, 1), jnp.float32))["params"]


def _loads_into_generator(task: TrainTask, loaded: Any) -> bool:
    """Whether init weights fill a GAN's generator (ColorNet weights) rather than the whole tree."""
    return task.mode == "gan" and "generator" not in loaded


def init_state(task: TrainTask, rng: jax.Array, init_params: Any = None) -> TrainState:
    """Fresh state: random params from model.init, or `init_params` (read_init_params) put in."""
    init_rng, state_rng = jax.random.split(rng)
    params = _init_params(task, init_rng)
    if init_params is not None:
        if _loads_into_generator(task, init_params):
            params = {**params, "generator": init_params}
        else:
            # A partial tree (the pretrained encoder) replaces those subtrees only.
            params = merge_subtrees(params, init_params)
    trained = params["generator"] if task.mode == "gan" else params
    opt_state = d_opt_state = None
    if task.tx is not None:
        opt_state = task.tx.init(trained)
    if task.d_tx is not None:
        d_opt_state = task.d_tx.init(params["discriminator"])
    ema_source = trained
    ema = None
    if task.config.optim.ema_decay is not None:
        ema = jax.tree_util.tree_map(jnp.copy, ema_source)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        rng=state_rng,
        ema_params=ema,
        d_opt_state=d_opt_state,
    )


def read_init_params(task: TrainTask) -> Any:
    """The params named by model.init_weights, on the host, checked against the model's tree.

    Read once before the jitted init and passed in as an argument (not baked in as constants);
    a tree that does not fit (another architecture or width) is refused with the differences.
    """
    from flax import traverse_util

    source = task.config.model.init_weights
    if str(source).endswith((".pth", ".pt", ".bin")):  # a port's PyTorch state dict
        loaded = load_pth_params(source, task.config.model.name)
    else:
        loaded = read_variables(resolve_weights(source))[0]["params"]
    target = jax.eval_shape(lambda r: _init_params(task, r), jax.random.PRNGKey(0))
    if _loads_into_generator(task, loaded):
        target = target["generator"]
    want = {k: v.shape for k, v in traverse_util.flatten_dict(target, sep="/").items()}
    have = {k: v.shape for k, v in traverse_util.flatten_dict(loaded, sep="/").items()}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:6]
        raise ConfigError(
            f"model.init_weights={source!r} does not fit {task.config.model.name!r} "
            f"(differing params, first few: {diff}); use weights of the same architecture."
        )
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), loaded)


def pretrained_parts(task: TrainTask) -> Any:
    """Subtrees that start from published weights (the ImageNet encoder), or None.

    A model whose contract names a pretrained encoder (LiteColorNet, or a GAN with it as the
    generator) starts its ``encoder`` from the EfficientNet-Lite ImageNet weights; everything
    else starts from its random init.
    """
    variant = model_contract(task.model).pretrained_encoder
    if variant is None:
        return None
    encoder = dict(lite_params(variant))
    encoder.pop("fc", None)  # the colorizer uses the pooled embedding, not the classifier
    parts = {"encoder": jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), encoder)}
    return {"generator": parts} if task.mode == "gan" else parts


def initial_params(task: TrainTask) -> Any:
    """The params a run starts from besides its random init: init_weights or pretrained parts."""
    if task.config.model.init_weights:
        return read_init_params(task)
    return pretrained_parts(task)


def create_state(task: TrainTask, mesh: Mesh) -> TrainState:
    """Initialise the state directly into replicated device memory on the mesh."""
    rng = jax.random.PRNGKey(task.config.train.seed)
    loaded = initial_params(task)
    return jax.jit(lambda r, p: init_state(task, r, p), out_shardings=replicated(mesh))(rng, loaded)


def abstract_state(task: TrainTask, where: Mesh | jax.sharding.Sharding) -> TrainState:
    """Shapes, dtypes and shardings of the state, without allocating it (restore target)."""
    shapes = jax.eval_shape(lambda r: init_state(task, r), jax.random.PRNGKey(0))
    sharding = replicated(where) if isinstance(where, Mesh) else where
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes
    )


def inference_params(task: TrainTask, state: TrainState) -> Any:
    """Parameters to evaluate or export: the EMA weights when enabled, else the live ones."""
    if state.ema_params is None:
        return state.params
    if task.mode == "gan":
        return {**state.params, "generator": state.ema_params}
    return state.ema_params


def inject_nan(loss: jax.Array, step: jax.Array, nan_step: int | None) -> jax.Array:
    """Testing aid: multiply the loss by NaN at one step so params and loss both go bad."""
    if nan_step is None:
        return loss
    return loss * jnp.where(step == nan_step, jnp.nan, 1.0)


def ema_update(old: Any, new: Any, decay: float | None) -> Any:
    """The exponential moving average after one step (None when the run keeps no EMA)."""
    if old is None or decay is None:
        return old
    return jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, old, new)


def apply_gradients(
    task: TrainTask, state: TrainState, loss: jax.Array, grads: Any
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update of a single-network state (params, optimizer, EMA) and its metrics."""
    updates, opt_state = task.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        ema_params=ema_update(state.ema_params, params, task.config.optim.ema_decay),
    )
    return new_state, {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": jnp.asarray(task.schedule(state.step), jnp.float32),
    }


def debiased_ema(task: Any, state: Any) -> Any:
    """The run's EMA with the weight of its random initialisation removed (Adam-style).

    The EMA starts as a copy of the initial parameters p0, so after n steps it is
    d^n p0 + (1 - d) sum_t d^(n-t) p_t: after a short run mostly the initialisation. Dividing
    out (ema - d^n p0) / (1 - d^n) leaves an average of the trained parameters only. p0 is
    rebuilt exactly as the run built it: the config's seed with the same compiled init, and
    the warm-start weights (model.init_weights) or pretrained parts it started from.
    """
    decay, steps = task.config.optim.ema_decay, int(state.step)
    if state.ema_params is None or decay is None or steps == 0:
        return state.ema_params
    rng = jax.random.PRNGKey(task.config.train.seed)
    # p0 is what the run started from: its init_weights (a warm start) or pretrained parts.
    initial = jax.jit(lambda r, p: init_state(task, r, p))(rng, initial_params(task)).ema_params
    weight = float(decay) ** steps
    if weight < 1e-12:
        return state.ema_params  # the initialisation has decayed away entirely

    def unbias(ema: Any, init: Any) -> np.ndarray:
        ema64, init64 = np.asarray(ema, np.float64), np.asarray(init, np.float64)
        return ((ema64 - weight * init64) / (1.0 - weight)).astype(np.asarray(ema).dtype)

    return jax.tree_util.tree_map(unbias, state.ema_params, initial)
