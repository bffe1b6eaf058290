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


def _is_static(dims: Any) -> bool:
    """Whether every dimension is a Python int (not a jax.export symbolic dimension)."""
    return all(isinstance(d, int) for d in dims)


def _upsample_linear_axis(x: jax.Array, factor: int, axis: int) -> jax.Array:
    """Bilinear (half-pixel centres, edges clamped) x`factor` upsampling along one axis.

    Output pixel k*i + p samples the input at i + (p + 0.5) / k - 0.5: a mix of pixel i and
    its neighbour on that side. Equal to jax.image.resize's bilinear upsampling by an integer
    factor, written without the input size as a number, so it exports with symbolic shapes.
    """
    n = x.shape[axis]
    before = jnp.concatenate([jax.lax.slice_in_dim(x, 0, 1, axis=axis), x], axis=axis)
    after = jnp.concatenate([x, jax.lax.slice_in_dim(x, n - 1, n, axis=axis)], axis=axis)
    prev = jax.lax.slice_in_dim(before, 0, n, axis=axis)
    nxt = jax.lax.slice_in_dim(after, 1, n + 1, axis=axis)
    phases = []
    for p in range(factor):
        pos = (p + 0.5) / factor - 0.5
        other = prev if pos < 0 else nxt
        phases.append((1.0 - abs(pos)) * x + abs(pos) * other)
    y = jnp.stack(phases, axis=axis + 1)
    return y.reshape(*x.shape[:axis], n * factor, *x.shape[axis + 1 :])


def upsample_to(x: jax.Array, size: tuple[Any, Any]) -> jax.Array:
    """Bilinear resize of NHWC x to `size`; symbolic shapes (jax.export) take integer factors.

    Static shapes go through `resize_to` (jax.image.resize) as always; a symbolic size must be
    an integer multiple of the input's (the models' heads are at H/stride), which
    `_upsample_linear_axis` computes identically.
    """
    if _is_static((*x.shape, *size)):
        return resize_to(x, size)
    for axis, target in ((1, size[0]), (2, size[1])):
        factor = target // x.shape[axis]
        if not isinstance(factor, int) or factor * x.shape[axis] != target:
            raise ConfigError(
                f"cannot export a resize from {x.shape[axis]} to {target} along axis {axis}: "
                "only integer upsampling factors export with symbolic shapes"
            )
        if factor > 1:
            x = _upsample_linear_axis(x, factor, axis)
    return x


def decode_bins(logits: jax.Array, size: tuple[Any, Any], temperature: float) -> jax.Array:
    """Normalised ab (N, *size, 2): the annealed mean of ab-bin logits, resized to `size`."""
    centers = jnp.asarray(ab_bin_centers(), dtype=jnp.float32)
    ab = (annealed_mean(logits, centers, temperature) / color.AB_SCALE).astype(jnp.float32)
    return upsample_to(ab, size)


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
    return upsample_to(out, l_norm.shape[1:3])
