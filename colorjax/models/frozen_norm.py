"""Inference BatchNorm of ported networks (Zhang et al., EfficientNet-Lite) as an affine map."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models.layers import Dtype


class FrozenBatchNorm(nn.Module):
    """Inference BatchNorm as a per-channel affine map (running statistics folded in)."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Return x * scale + shift."""
        scale = self.param("scale", nn.initializers.ones, (self.features,), jnp.float32)
        shift = self.param("shift", nn.initializers.zeros, (self.features,), jnp.float32)
        return x * scale.astype(self.dtype) + shift.astype(self.dtype)
