"""The 4x4 convs of the U-Net and the PatchGAN (UpConv, DownConv, PatchConv): layer interface.

Parameters, initialisers and outputs are flax's own (tests/test_layers.py); each layer names
its reference form (XLA's convolution, cuDNN on GPU) and its XLA:CPU form from
`colorjax.models.cpu.conv4x4`, and `jax.lax.platform_dependent` picks the CPU form on CPU only.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.models.cpu import conv4x4 as cpu4
from colorjax.models.cpu.shapes import DOWNCONV_PADDING, NHWC, PATCHCONV_PADDING, UPCONV_PADDING
from colorjax.models.layers import Dtype


def _upconv_lax(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-2 transposed conv exactly as flax's nn.ConvTranspose computes it."""
    return jax.lax.conv_transpose(x, kernel, (2, 2), UPCONV_PADDING, dimension_numbers=NHWC)


def _downconv_lax(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-2 conv exactly as flax's nn.Conv computes it."""
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), DOWNCONV_PADDING, dimension_numbers=NHWC)


def _patchconv_lax(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The 4x4 stride-1 conv exactly as flax's nn.Conv computes it."""
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), PATCHCONV_PADDING, dimension_numbers=NHWC
    )


def _conv4x4_params(module: nn.Module, x: jax.Array) -> tuple[jax.Array, ...]:
    """(x, kernel, bias) of a 4x4 conv layer, named and initialised as flax's, dtype-promoted."""
    kernel = module.param(
        "kernel", module.kernel_init, (4, 4, x.shape[-1], module.features), module.param_dtype
    )
    bias = module.param("bias", module.bias_init, (module.features,), module.param_dtype)
    return nn.dtypes.promote_dtype(x, kernel, bias, dtype=module.dtype)


class _PhaseConv4x4(nn.Module):
    """A 4x4 conv layer with its own CPU lowering; subclasses name the two lowerings.

    Parameters are flax's ('kernel' (4, 4, in, out), 'bias' (out,)); `platform_dependent` is
    resolved when lowering for one platform, so each backend compiles only its branch.
    `mesh` (a jax.sharding.Mesh or None) is the mesh the training step shards the batch over;
    on CPU the per-sample kernel-gradient loops (layers with few outputs) run per device on it
    (None: one loop over the whole batch). It changes neither parameters nor outputs.
    """

    features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()
    mesh: Mesh | None = None

    @staticmethod
    def cpu_form(x: jax.Array, kernel: jax.Array, mesh: Mesh | None) -> jax.Array:
        """The convolution as run on CPU (a form of `colorjax.models.cpu.conv4x4`)."""
        raise NotImplementedError

    @staticmethod
    def default_form(x: jax.Array, kernel: jax.Array) -> jax.Array:
        """The convolution as run elsewhere (XLA's own; cuDNN on GPU)."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the conv (CPU: `cpu_form` on this layer's mesh) and add the bias."""
        x, kernel, bias = _conv4x4_params(self, x)
        cpu = functools.partial(self.cpu_form, mesh=self.mesh)
        y = jax.lax.platform_dependent(x, kernel, cpu=cpu, default=self.default_form)
        return y + bias.reshape((1, 1, 1, -1))


class UpConv(_PhaseConv4x4):
    """4x4 stride-2 transposed conv (exact 2x upsampling), a drop-in for nn.ConvTranspose.

    Same parameters ('kernel' (4, 4, in, out), 'bias' (out,)), initialisers and outputs as
    `nn.ConvTranspose(features, (4, 4), (2, 2), padding=UPCONV_PADDING)`, so weights saved
    from either load into the other. On CPU it runs as four output-phase convolutions
    (`cpu.conv4x4.upconv_phases`; with at most 8 outputs its kernel gradient from tap grams);
    elsewhere it stays XLA's transposed convolution (cuDNN on GPU).
    """

    cpu_form = staticmethod(cpu4.upconv)
    default_form = staticmethod(_upconv_lax)


class DownConv(_PhaseConv4x4):
    """4x4 stride-2 conv with padding 1 (exact 1/2 downsampling), a drop-in for nn.Conv.

    Same parameters, initialisers and outputs as
    `nn.Conv(features, (4, 4), (2, 2), padding=DOWNCONV_PADDING)`. On CPU it runs as a
    space-to-depth 2x2 conv for inputs of fewer than 8 channels, else with its input gradient
    as four output-phase convolutions (`cpu.conv4x4.downconv`); elsewhere XLA's own.
    """

    cpu_form = staticmethod(cpu4.downconv)
    default_form = staticmethod(_downconv_lax)


class PatchConv(_PhaseConv4x4):
    """4x4 stride-1 conv with padding 1 (the PatchGAN's last layers), a drop-in for nn.Conv.

    Same parameters, initialisers and outputs as
    `nn.Conv(features, (4, 4), (1, 1), padding=PATCHCONV_PADDING)`. On CPU a layer with at
    most 8 outputs (the 1-channel logit layer) computes its kernel gradient from tap grams
    (`cpu.conv4x4.patchconv`, 1.0 -> 0.3 ms at batch 4, 128 px); elsewhere XLA's own.
    """

    cpu_form = staticmethod(cpu4.patchconv)
    default_form = staticmethod(_patchconv_lax)
