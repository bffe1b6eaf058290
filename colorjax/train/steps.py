"""Pure train/eval step functions, compiled once with jax.jit over the mesh, state donated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from colorjax import color, gamut, losses, metrics
from colorjax.errors import ConfigError
from colorjax.models import model_contract
from colorjax.models.predict import predict_ab
from colorjax.parallel import data_sharding, replicated
from colorjax.train.finetune import zhang_classification_step
from colorjax.train.state import (
    ZHANG_CLASSIFICATION,
    TrainState,
    TrainTask,
    apply_gradients,
    ema_update,
    inference_params,
    inject_nan,
)

StepFn = Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]


def _classification_loss_fn(task: TrainTask) -> Callable[..., jax.Array]:
    """Rebalanced soft-encoded cross-entropy(logits, ab_norm) over the in-gamut ab bins."""
    cfg = task.config.loss
    centers = jnp.asarray(gamut.ab_bin_centers(), jnp.float32)
    weights = gamut.rebalancing_weights(gamut.default_prior(), cfg.rebalance_lambda)
    weights = np.asarray(weights, np.float32)

    def classification(logits: jax.Array, ab_norm: jax.Array) -> jax.Array:
        # Heads with head_stride > 1 predict at H/k: compare against block-mean targets.
        target = losses.area_downsample(ab_norm, logits.shape[1:3])
        return losses.rebalanced_cross_entropy(
            logits,
            target * color.AB_SCALE,
            centers,
            jnp.asarray(weights),
            sigma=cfg.soft_sigma,
            neighbors=cfg.soft_neighbors,
            gray_threshold=cfg.gray_chroma_threshold,
        )

    return classification


def _colornet_loss_fn(task: TrainTask) -> Callable[..., jax.Array]:
    """Loss(prediction, ab_norm) for the ColorNet head of this task."""
    cfg = task.config.loss
    if task.mode == "classification":
        return _classification_loss_fn(task)

    def regression(pred: jax.Array, ab_norm: jax.Array) -> jax.Array:
        target = losses.area_downsample(ab_norm, pred.shape[1:3])
        return losses.regression_loss(pred, target, cfg.regression, cfg.huber_delta)

    return regression


def _palette_loss_fn(task: TrainTask) -> Callable[..., jax.Array] | None:
    """Weighted palette loss(scene_logits, ab_norm at the head's resolution), or None if off."""
    cfg = task.config.loss
    if not cfg.scene_weight:
        return None
    if not model_contract(task.model).palette_head:
        raise ConfigError(
            f"loss.scene_weight={cfg.scene_weight} needs a model with a scene head "
            f"({task.config.model.name!r} has none); use colornet-small-cls4-film or set it to 0."
        )
    centers = jnp.asarray(gamut.ab_bin_centers(), jnp.float32)

    def palette(scene_logits: jax.Array, ab_small: jax.Array) -> jax.Array:
        ce = losses.palette_cross_entropy(
            scene_logits,
            ab_small * color.AB_SCALE,
            centers,
            sigma=cfg.soft_sigma,
            neighbors=cfg.soft_neighbors,
            gray_threshold=cfg.gray_chroma_threshold,
        )
        return cfg.scene_weight * ce

    return palette


def colornet_step(task: TrainTask) -> StepFn:
    """Un-jitted step for ColorNet (regression or classification head)."""
    loss_of = _colornet_loss_fn(task)
    palette_of = _palette_loss_fn(task)
    nan_step = task.config.train.inject_nan_step
    colorfulness_weight = task.config.loss.colorfulness_weight
    if colorfulness_weight and (task.mode != "regression" or palette_of is not None):
        raise ConfigError(
            f"loss.colorfulness_weight={colorfulness_weight} needs a model that predicts ab "
            f"(a regression model such as ddcolor-tiny), not {task.config.model.name!r} "
            f"({task.mode}); set it to 0"
        )

    def step(state: TrainState, batch: dict[str, jax.Array]):
        rng = jax.random.fold_in(state.rng, state.step)
        l_norm, ab_norm = color.rgb_uint8_to_lab_inputs(batch["rgb"])

        def loss_fn(params: Any) -> jax.Array:
            variables, rngs = {"params": params}, {"dropout": rng}
            if palette_of is None:
                out = task.model.apply(variables, l_norm, train=True, rngs=rngs)
                loss = loss_of(out, ab_norm)
                if colorfulness_weight:  # DDColor's term, on the predicted colour photo
                    rgb = color.lab_inputs_to_rgb(l_norm, out)
                    loss = loss + colorfulness_weight * losses.colorfulness_loss(rgb)
                return inject_nan(loss, state.step, nan_step)
            out, aux = task.model.apply(variables, l_norm, train=True, rngs=rngs, mutable=["aux"])
            # The palette from the same block-mean ab the colour loss uses: 16x fewer pixels.
            ab_small = losses.area_downsample(ab_norm, out.shape[1:3])
            total = loss_of(out, ab_norm) + palette_of(aux["aux"]["scene_logits"][0], ab_small)
            return inject_nan(total, state.step, nan_step)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return apply_gradients(task, state, loss, grads)

    return step


def gan_step(task: TrainTask) -> StepFn:
    """Un-jitted pix2pix step: update the discriminator, then the generator against the new D."""
    cfg = task.config.loss
    nan_step = task.config.train.inject_nan_step
    decay = task.config.optim.ema_decay
    model = task.model
    # A ColorNet generator also returns its bin logits: the colour loss stays on during the
    # adversarial phase (NoGAN), so D sharpens colour without undoing what CE taught.
    ce_of = _classification_loss_fn(task) if cfg.lambda_ce else None
    if cfg.scene_weight:
        raise ConfigError(
            f"loss.scene_weight={cfg.scene_weight} trains a ColorNet's scene head; the GAN step "
            "does not use it: set it to 0 for GAN runs."
        )

    def step(state: TrainState, batch: dict[str, jax.Array]):
        rng = jax.random.fold_in(state.rng, state.step)
        l_norm, ab_norm = color.rgb_uint8_to_lab_inputs(batch["rgb"])
        g_params = state.params["generator"]
        d_params = state.params["discriminator"]

        def generate(gp: Any) -> tuple[jax.Array, Any]:
            variables = {"params": {"generator": gp, "discriminator": d_params}}
            return model.apply(
                variables, l_norm, train=True, rngs={"dropout": rng}, method="generate"
            )

        # One generator forward serves both updates; its VJP gives the G gradient later.
        (fake, gen_logits), g_vjp = jax.vjp(generate, g_params)

        def discriminate(dp: Any, ab: jax.Array) -> jax.Array:
            variables = {"params": {"generator": g_params, "discriminator": dp}}
            return model.apply(variables, l_norm, ab, method="discriminate")

        def d_loss_fn(dp: Any):
            real_logits = discriminate(dp, ab_norm)
            fake_logits = discriminate(dp, jax.lax.stop_gradient(fake))
            loss = losses.gan_discriminator_loss(real_logits, fake_logits, cfg.gan)
            aux = (
                jnp.mean(real_logits.astype(jnp.float32)),
                jnp.mean(fake_logits.astype(jnp.float32)),
            )
            return loss, aux

        (d_loss, (d_real, d_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
        d_updates, d_opt_state = task.d_tx.update(d_grads, state.d_opt_state, d_params)
        d_params = optax.apply_updates(d_params, d_updates)

        def g_loss_fn(outputs: tuple[jax.Array, Any]):
            fake_ab, logits = outputs
            adv = losses.gan_generator_loss(discriminate(d_params, fake_ab), cfg.gan)
            l1 = losses.l1_loss(fake_ab, ab_norm)
            ce = ce_of(logits, ab_norm) if ce_of is not None else jnp.zeros((), jnp.float32)
            total = adv + cfg.lambda_l1 * l1 + cfg.lambda_ce * ce
            return inject_nan(total, state.step, nan_step), (adv, l1, ce)

        (g_loss, (g_adv, g_l1, g_ce)), out_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            (fake, gen_logits)
        )
        (g_grads,) = g_vjp(out_grads)
        g_updates, opt_state = task.tx.update(g_grads, state.opt_state, g_params)
        g_params = optax.apply_updates(g_params, g_updates)
        new_state = state.replace(
            step=state.step + 1,
            params={"generator": g_params, "discriminator": d_params},
            opt_state=opt_state,
            d_opt_state=d_opt_state,
            ema_params=ema_update(state.ema_params, g_params, decay),
        )
        out = {
            "loss": g_loss,
            "g_adv": g_adv,
            "g_l1": g_l1,
            "g_ce": g_ce,
            "d_loss": d_loss,
            "d_real_logit": d_real,
            "d_fake_logit": d_fake,
            "grad_norm": optax.tree.norm(g_grads),
            "d_grad_norm": optax.tree.norm(d_grads),
            "learning_rate": jnp.asarray(task.schedule(state.step), jnp.float32),
        }
        return new_state, out

    return step


def make_train_step(task: TrainTask, mesh: Mesh) -> StepFn:
    """The task's step, jitted once: state replicated and donated, batch sharded on 'data'.

    Build the task on the same mesh (`make_task(config, mesh=mesh)`): its model's CPU
    kernel-gradient loops then run per device on their shard of the batch.
    """
    if task.mode == "gan":
        fn = gan_step(task)
    elif task.mode == ZHANG_CLASSIFICATION:
        fn = zhang_classification_step(task)
    else:
        fn = colornet_step(task)
    return jax.jit(
        fn,
        in_shardings=(replicated(mesh), data_sharding(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=0,
    )


def eval_metrics(task: TrainTask, params: Any, rgb_u8: jax.Array) -> dict[str, jax.Array]:
    """Batch-mean PSNR, colourfulness (pred/true) and ab L1 of the model on uint8 RGB."""
    l_norm, ab_norm = color.rgb_uint8_to_lab_inputs(rgb_u8)
    pred_ab = predict_ab(task.model, {"params": params}, l_norm).astype(jnp.float32)
    pred_rgb = color.lab_inputs_to_rgb(l_norm, pred_ab) * 255.0
    true_rgb = rgb_u8.astype(jnp.float32)
    return {
        "psnr": jnp.mean(metrics.psnr(pred_rgb, true_rgb)),
        "colorfulness_pred": jnp.mean(metrics.colorfulness(pred_rgb)),
        "colorfulness_true": jnp.mean(metrics.colorfulness(true_rgb)),
        "ab_l1": losses.l1_loss(pred_ab, ab_norm),
    }


def make_eval_step(task: TrainTask, mesh: Mesh) -> Callable[[TrainState, Any], dict]:
    """Jitted eval step on a validation batch (EMA weights when enabled); state not donated."""

    def fn(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return eval_metrics(task, inference_params(task, state), batch["rgb"])

    return jax.jit(
        fn,
        in_shardings=(replicated(mesh), data_sharding(mesh)),
        out_shardings=replicated(mesh),
    )
