"""Fine-tuning zhang-eccv16 from its weights: the cross-entropy step on its own 313 bins.

The run starts from ``model.init_weights`` (``colorjax.train.state.read_init_params``: a
manifest name such as ``zhang-eccv16``, a ``.safetensors`` file, or the model's PyTorch ``.pth``).

zhang-eccv16 is a classifier over its own 313 ab bins. Its bin centres are not colorjax's 261:
they are stored in the weights, as the kernel of the bias-free 1x1 conv 313 -> 2 that decodes
the softmax (``model_out``, times 110). The cross-entropy step therefore reads the centres from
the parameters (stop-gradient; the loss gives that conv no gradient, so they stay put), soft-
encodes the ground truth on them (5 neighbours, sigma 5, as Zhang et al.), at the logits' H/4
grid (ab subsampled with ``[::4, ::4]``, like the reference training net), and rebalances with
weights from colorjax's measured ab prior moved onto the nearest Zhang bin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from colorjax import color, gamut, losses
from colorjax.train.state import TrainState, TrainTask, apply_gradients, inject_nan


def zhang_class_weights(centers: jax.Array, lam: float) -> jax.Array:
    """Rebalancing weights over Zhang's bins from colorjax's prior moved to the nearest bin."""
    ours = jnp.asarray(gamut.ab_bin_centers(), jnp.float32)
    prior = jnp.asarray(gamut.default_prior(), jnp.float32)
    d2 = jnp.sum(jnp.square(ours[:, None, :] - centers[None, :, :]), axis=-1)
    moved = jnp.zeros(centers.shape[0], jnp.float32).at[jnp.argmin(d2, axis=-1)].add(prior)
    return gamut.rebalancing_weights(moved, lam)


def zhang_classification_step(task: TrainTask) -> Callable:
    """Un-jitted step: rebalanced cross-entropy on zhang-eccv16's 313 logits at H/4."""
    cfg = task.config.loss
    nan_step = task.config.train.inject_nan_step

    def step(state: TrainState, batch: dict[str, jax.Array]):
        l_norm, ab_norm = color.rgb_uint8_to_lab_inputs(batch["rgb"])
        target = ab_norm[:, ::4, ::4] * color.AB_SCALE  # the logits' grid, in CIE units
        kernel = state.params["model_out"]["kernel"]
        centers = jax.lax.stop_gradient(kernel[0, 0]).astype(jnp.float32) * color.AB_SCALE
        weights = zhang_class_weights(centers, cfg.rebalance_lambda)

        def loss_fn(params: Any) -> jax.Array:
            logits = task.model.apply({"params": params}, l_norm, train=True, return_logits=True)
            loss = losses.rebalanced_cross_entropy(
                logits,
                target,
                centers,
                weights,
                sigma=cfg.soft_sigma,
                neighbors=cfg.soft_neighbors,
                gray_threshold=cfg.gray_chroma_threshold,
            )
            return inject_nan(loss, state.step, nan_step)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return apply_gradients(task, state, loss, grads)

    return step
