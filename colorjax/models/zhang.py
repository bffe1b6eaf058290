"""Zhang et al. colorizers: ECCV 2016 ("Colorful Image Colorization") and SIGGRAPH 2017 (hints).

Flax ports of the networks in richzhang/colorization (``colorizers/eccv16.py`` and
``siggraph17.py``), layer for layer, so that the official PyTorch weights load unchanged
(``colorjax.weights.pth_convert`` converts them). Layout facts, from the reference code:

- Every conv is 3x3 with bias and padding 1 (dilated blocks: dilation 2, padding 2); a ReLU
  follows each conv; BatchNorm closes each encoder block. BatchNorm is inference-only here: a
  frozen per-channel ``scale``/``shift`` (running statistics folded in at conversion), so the
  models are pure ``init``/``apply`` with no mutable collections.
- Module names mirror the PyTorch ``nn.Sequential`` indices: ``model3_4`` is the PyTorch
  ``model3.4``; conversion is a rename plus a layout change.
- Inputs use colorjax's ``l_norm = L / 50 - 1``; Zhang's networks see ``(L - 50) / 100``, which
  is exactly ``l_norm / 2``. Outputs are ``ab / 110``: colorjax's normalised ab.

ECCV16 (``ZhangECCV16``): blocks 1-3 end in a stride-2 conv (H/8), blocks 5-6 are dilated,
block 8 upsamples x2 with a transposed conv and ends in 313 logits at H/4; the head is softmax,
a bias-free 1x1 conv 313 -> 2 whose kernel holds the 313 ab bin centres (/110), and a bilinear
x4 upsample (PyTorch ``align_corners=False``) back to H x W.

SIGGRAPH17 (``ZhangSIGGRAPH17``): input is (L, ab hints / 110, hint mask); the encoder
subsamples with ``[::2, ::2]`` between blocks; the decoder adds transposed-conv upsamples to 3x3
shortcut convs of blocks 3, 2 and 1, ends in LeakyReLU(0.2), a 1x1 conv 128 -> 2 and tanh at
full resolution. The reference model's unused 529-class branch (``model_class``) is left out.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.errors import InputShapeError
from colorjax.models.conv4x4 import UpConv
from colorjax.models.cpu import winograd
from colorjax.models.cpu.shapes import NHWC
from colorjax.models.frozen_norm import FrozenBatchNorm
from colorjax.models.layers import Conv1x1, Dtype, check_l_input
from colorjax.models.registry import ModelContract, register_model

__all__ = ["ZHANG_NUM_BINS", "Conv3x3", "ZhangECCV16", "ZhangSIGGRAPH17", "bilinear_upsample"]

ZHANG_NUM_BINS = 313


class Conv3x3(nn.Module):
    """PyTorch Conv2d(k=3, stride 1, padding = dilation) with bias, as nn.Conv's parameters.

    On CPU, float32, with at least `winograd.MIN_CHANNELS` input channels it runs as
    `cpu.winograd.conv3x3` (Winograd F(2x2, 3x3) matmuls: same outputs within float32
    round-off, same gradients); elsewhere as `jax.lax.conv_general_dilated`.
    """

    features: int
    dilation: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Convolve NHWC x, output at the input's size."""
        shape = (3, 3, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        d = self.dilation

        def lax_form(a: jax.Array, k: jax.Array) -> jax.Array:
            pads = ((d, d), (d, d))
            return jax.lax.conv_general_dilated(
                a, k, (1, 1), pads, rhs_dilation=(d, d), dimension_numbers=NHWC
            )

        if self.dtype == jnp.float32 and x.shape[-1] >= winograd.MIN_CHANNELS:
            cpu = functools.partial(winograd.conv3x3, dilation=d)
            y = jax.lax.platform_dependent(x, kernel, cpu=cpu, default=lax_form)
        else:
            y = lax_form(x, kernel)
        return y + bias.astype(self.dtype)


def _conv(
    features: int, name: str, dtype: Dtype, *, kernel: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Module:
    """A PyTorch-style conv: symmetric explicit padding dilation * (kernel // 2), with bias."""
    if kernel == 3 and stride == 1:
        return Conv3x3(features, dilation, dtype, name=name)
    pad = dilation * (kernel // 2)
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(dilation, dilation),
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def _up(features: int, name: str, dtype: Dtype, mesh: Mesh | None) -> UpConv:
    """PyTorch ConvTranspose2d(k=4, s=2, p=1): the shared 4x4 stride-2 transposed conv layer."""
    return UpConv(features, dtype=dtype, param_dtype=jnp.float32, mesh=mesh, name=name)


def _block(
    x: jax.Array,
    prefix: str,
    features: int,
    convs: int,
    dtype: Dtype,
    *,
    last_stride: int = 1,
    dilation: int = 1,
    leading_relu: bool = False,
) -> jax.Array:
    """[ReLU,] (conv, ReLU) x convs, BatchNorm; names follow the PyTorch Sequential indices."""
    offset = 0
    if leading_relu:
        x, offset = nn.relu(x), 1
    for i in range(convs):
        stride = last_stride if i == convs - 1 else 1
        conv = _conv(
            features, f"{prefix}_{offset + 2 * i}", dtype, stride=stride, dilation=dilation
        )
        x = nn.relu(conv(x))
    return FrozenBatchNorm(features, dtype, name=f"{prefix}_{offset + 2 * convs}")(x)


def bilinear_upsample(x: jax.Array, factor: int) -> jax.Array:
    """Upsample NHWC by an integer factor exactly as PyTorch's bilinear, align_corners=False."""

    def axis(n_in: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        # Half-pixel source coordinates, clamped at 0 like PyTorch; the far edge repeats.
        src = jnp.maximum((jnp.arange(n_in * factor, dtype=jnp.float32) + 0.5) / factor - 0.5, 0)
        lo = jnp.minimum(jnp.floor(src).astype(jnp.int32), n_in - 1)
        hi = jnp.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo.astype(jnp.float32)).astype(x.dtype)

    _, h, w, _ = x.shape
    y0, y1, wy = axis(h)
    x0, x1, wx = axis(w)
    rows = x[:, y0] * (1 - wy)[None, :, None, None] + x[:, y1] * wy[None, :, None, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :, None] + rows[:, :, x1] * wx[None, None, :, None]


class ZhangECCV16(nn.Module):
    """Zhang et al. 2016 classification colorizer: L (N,H,W,1) -> ab / 110 (N,H,W,2).

    ``return_logits=True`` returns the 313 bin logits at H/4 instead (for cross-entropy
    fine-tuning); the bin centres are ``params['model_out']['kernel'][0, 0] * 110``.
    ``mesh``: the training step's mesh, passed to the UpConv layers (their CPU kernel-gradient
    loops run per device on it); None outside training.
    """

    dtype: Dtype = jnp.float32
    mesh: Mesh | None = None

    stride: ClassVar[int] = 8

    @property
    def contract(self) -> ModelContract:
        """ab out (the network decodes its 313 bins itself); stride 8."""
        return ModelContract(task="regression", stride=self.stride, takes_hints=False)

    @nn.compact
    def __call__(
        self, l_norm: jax.Array, train: bool = False, *, return_logits: bool = False
    ) -> jax.Array:
        """Predict normalised ab at the input size (or bin logits at H/4)."""
        del train  # no dropout, and BatchNorm is frozen
        check_l_input(l_norm, self.stride, "ZhangECCV16")
        dt = self.dtype
        x = (l_norm * 0.5).astype(dt)  # (L - 50) / 100
        x = _block(x, "model1", 64, 2, dt, last_stride=2)
        x = _block(x, "model2", 128, 2, dt, last_stride=2)
        x = _block(x, "model3", 256, 3, dt, last_stride=2)
        x = _block(x, "model4", 512, 3, dt)
        x = _block(x, "model5", 512, 3, dt, dilation=2)
        x = _block(x, "model6", 512, 3, dt, dilation=2)
        x = _block(x, "model7", 512, 3, dt)
        x = nn.relu(_up(256, "model8_0", dt, self.mesh)(x))
        x = nn.relu(_conv(256, "model8_2", dt)(x))
        x = nn.relu(_conv(256, "model8_4", dt)(x))
        logits = Conv1x1(ZHANG_NUM_BINS, dtype=dt, name="model8_6")(x)
        if return_logits:
            return logits.astype(jnp.float32)
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(dt)
        out = Conv1x1(2, use_bias=False, dtype=dt, name="model_out")(probs)
        return bilinear_upsample(out.astype(jnp.float32), 4)


def _check_hints(hint_ab: Any, hint_mask: Any, l_shape: tuple[int, ...]) -> None:
    """Raise InputShapeError unless the hint arrays match L's (N, H, W)."""
    for name, value, channels in (("hint_ab", hint_ab, 2), ("hint_mask", hint_mask, 1)):
        shape = tuple(getattr(value, "shape", ()))
        expected = (*tuple(l_shape[:3]), channels)
        if shape != expected:
            raise InputShapeError(
                f"ZhangSIGGRAPH17 expects {name} of shape {expected} (same N, H, W as L), got "
                f"{shape or 'no shape'}; build hints with colorjax.inference.hints.hint_arrays."
            )


class ZhangSIGGRAPH17(nn.Module):
    """Zhang et al. 2017 colorizer with user hints: (L, ab hints, mask) -> ab / 110 (N,H,W,2).

    ``hint_ab`` is normalised ab (ab / 110, (N,H,W,2)) where ``hint_mask`` (N,H,W,1) is 1, and
    0 elsewhere; without hints both are zeros, as in the reference ``forward``. ``mesh``: as
    ZhangECCV16's.
    """

    dtype: Dtype = jnp.float32
    mesh: Mesh | None = None

    stride: ClassVar[int] = 8

    @property
    def contract(self) -> ModelContract:
        """ab out (the hints are optional inputs); stride 8."""
        return ModelContract(task="regression", stride=self.stride, takes_hints=True)

    @nn.compact
    def __call__(
        self,
        l_norm: jax.Array,
        hint_ab: jax.Array | None = None,
        hint_mask: jax.Array | None = None,
        train: bool = False,
    ) -> jax.Array:
        """Predict normalised ab at the input size, conditioned on the hints if given."""
        del train
        check_l_input(l_norm, self.stride, "ZhangSIGGRAPH17")
        dt = self.dtype
        n, h, w, _ = l_norm.shape
        if hint_ab is None and hint_mask is None:
            hint_ab, hint_mask = jnp.zeros((n, h, w, 2), dt), jnp.zeros((n, h, w, 1), dt)
        _check_hints(hint_ab, hint_mask, l_norm.shape)
        x = jnp.concatenate([l_norm * 0.5, hint_ab, hint_mask], axis=-1).astype(dt)
        conv1 = _block(x, "model1", 64, 2, dt)
        conv2 = _block(conv1[:, ::2, ::2], "model2", 128, 2, dt)
        conv3 = _block(conv2[:, ::2, ::2], "model3", 256, 3, dt)
        x = _block(conv3[:, ::2, ::2], "model4", 512, 3, dt)
        x = _block(x, "model5", 512, 3, dt, dilation=2)
        x = _block(x, "model6", 512, 3, dt, dilation=2)
        x = _block(x, "model7", 512, 3, dt)
        x = _up(256, "model8up_0", dt, self.mesh)(x) + _conv(256, "model3short8_0", dt)(conv3)
        x = _block(x, "model8", 256, 2, dt, leading_relu=True)
        x = _up(128, "model9up_0", dt, self.mesh)(x) + _conv(128, "model2short9_0", dt)(conv2)
        x = _block(x, "model9", 128, 1, dt, leading_relu=True)
        x = _up(128, "model10up_0", dt, self.mesh)(x) + _conv(128, "model1short10_0", dt)(conv1)
        x = nn.leaky_relu(_conv(128, "model10_1", dt)(nn.relu(x)), negative_slope=0.2)
        out = _conv(2, "model_out_0", dt, kernel=1)(x)
        return jnp.tanh(out.astype(jnp.float32))


# ----------------------------------------------------------------------------- registered variants

register_model(
    "zhang-eccv16",
    "zhang-eccv16",
    ZhangECCV16,
    "Zhang et al. ECCV 2016: VGG-style net, 313 ab bins decoded by softmax mean inside the "
    "net; official ImageNet weights convert from PyTorch",
)
register_model(
    "zhang-siggraph17",
    "zhang-siggraph17",
    ZhangSIGGRAPH17,
    "Zhang et al. SIGGRAPH 2017: U-Net-style net taking L plus user colour hints, tanh ab; "
    "official ImageNet weights convert from PyTorch",
)
