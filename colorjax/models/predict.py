"""What every model predicts, in one place: normalised ab from L, ab bins decoded once.

Training's evaluation step, inference and the benchmarks call `predict_ab`; a GAN whose
generator predicts ab bins decodes them with the same `decode_bins`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from colorjax import color
from colorjax.errors import ConfigError
from colorjax.gamut import ab_bin_centers, annealed_mean
from colorjax.models.layers import resize_to
from colorjax.models.registry import model_contract

DEFAULT_TEMPERATURE = 0.38


def decode_bins(logits: jax.Array, size: tuple[int, int], temperature: float) -> jax.Array:
    """Normalised ab (N, *size, 2): the annealed mean of ab-bin logits, resized to `size`."""
    centers = jnp.asarray(ab_bin_centers(), dtype=jnp.float32)
    ab = (annealed_mean(logits, centers, temperature) / color.AB_SCALE).astype(jnp.float32)
    return resize_to(ab, size)


def predict_ab(
    model: Any,
    variables: Any,
    l_norm: jax.Array,
    temperature: float = DEFAULT_TEMPERATURE,
    hints: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Normalised ab (N,H,W,2) for any registered model in eval mode (annealed mean for bins).

    `hints` is (hint_ab / 110 (N,H,W,2), hint_mask (N,H,W,1)) for models that take colour hints
    (its contract's ``takes_hints``, e.g. zhang-siggraph17); see colorjax.inference.hints.
    """
    contract = model_contract(model)
    if hints is not None:
        if not contract.takes_hints:
            raise ConfigError(
                f"{type(model).__name__} takes no colour hints; drop the hints or use a model "
                "that takes them (zhang-siggraph17)."
            )
        return model.apply(variables, l_norm, *hints, train=False)
    if contract.decodes_bins:
        # A GAN with a bin generator decodes its bins itself (decode_bins), at the requested T.
        return model.apply(variables, l_norm, train=False, temperature=temperature)
    out = model.apply(variables, l_norm, train=False)
    if contract.task == "classification":
        return decode_bins(out, l_norm.shape[1:3], temperature)
    return resize_to(out, l_norm.shape[1:3])
