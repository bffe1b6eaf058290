"""DDColor (Kang et al., ICCV 2023) in Flax: ConvNeXt encoder, pixel decoder, colour decoder.

The network, module for module as the official PyTorch code builds it:

- encoder: ConvNeXt-T or -L (``backbones.convnext``); its four normed maps (strides 4-32);
- pixel decoder: three U-Net blocks (DeOldify's ``UnetBlockWide``: 1x1 conv, pixel shuffle x2
  and a 2x2 blur up, the skip through a BatchNorm, a 3x3 conv) from stride 32 to 4, then a
  pixel shuffle x4 to full resolution;
- colour decoder: 100 learned colour queries through 9 layers of cross-attention (to the
  decoder's stride-16, 8 and 4 maps in turn, with sine position and level embeddings),
  self-attention and an FFN; each query's embedding dotted with the full-resolution features
  gives 100 maps;
- a 1x1 conv from those maps and the image to ab.

BatchNorm is frozen into a per-channel scale and shift, spectral norm is baked into the
kernels (``state_dict_to_params``), so the module is stateless under ``apply``. Parameter
names mirror the official state dict ('.' before an index becomes '_').

The module takes colorjax's normalised L (N, H, W, 1), H and W multiples of 32, makes the
official input (the gray image (L, 0, 0) as RGB with ImageNet's normalisation), and returns
normalised ab (ab / 110), clipped to the CIE range the official output is read in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh

from colorjax import color
from colorjax.errors import WeightsError
from colorjax.models.backbones.convnext import ConvNeXt
from colorjax.models.backbones.convnext import state_dict_to_params as convnext_params
from colorjax.models.frozen_norm import FrozenBatchNorm
from colorjax.models.layers import Dtype, check_l_input
from colorjax.models.registry import ModelContract, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-5  # PyTorch's BatchNorm2d
LN_EPS = 1e-5  # PyTorch's nn.LayerNorm default (the colour decoder's norms)
AB_RANGE = (-128.0, 127.0)  # the official output is read as CIE ab in this range
NF = 512
HIDDEN = 256
HEADS = 8
FFN = 2048
SCALES = 3


def pixel_shuffle(x: jax.Array, scale: int) -> jax.Array:
    """PyTorch's PixelShuffle in NHWC: channel c*s*s + i*s + j goes to (i, j) of channel c."""
    n, h, w, c = x.shape
    out = c // (scale * scale)
    x = x.reshape(n, h, w, out, scale, scale)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(n, h * scale, w * scale, out)


def blur(x: jax.Array) -> jax.Array:
    """ReplicationPad2d((1, 0, 1, 0)) then AvgPool2d(2, stride=1): the anti-checkerboard blur."""
    x = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)), mode="edge")
    return (x[:, :-1, :-1] + x[:, 1:, :-1] + x[:, :-1, 1:] + x[:, 1:, 1:]) * 0.25


class _PointwiseConv(nn.Module):
    """nn.Conv(features, (1, 1))'s parameters and math, optionally with a projection fused in.

    Without ``head`` it is nn.Conv's 1x1 conv. With ``head`` (N, features / scale**2, K) it
    returns ``relu(conv(x))`` with each of the ``scale**2`` shuffle phases' channels mapped
    through ``head``, phase-major (N, H, W, scale**2, K): the kernel's output columns are
    reordered so each phase's channels are contiguous and the projection is a plain matmul.
    """

    features: int
    use_bias: bool = True
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, head: jax.Array | None = None, scale: int = 1) -> jax.Array:
        """The 1x1 conv of x, or its ReLU projected per phase through head."""
        shape = (1, 1, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)[0, 0]
        bias = None
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        if head is not None:
            phases = scale * scale
            channels = self.features // phases
            # Output column c * phases + p -> p * channels + c: each phase's channels contiguous.
            kernel = kernel.reshape(-1, channels, phases).transpose(0, 2, 1).reshape(kernel.shape)
            if bias is not None:
                bias = bias.reshape(channels, phases).T.reshape(-1)
        dtype = self.dtype or jnp.result_type(x, kernel)
        y = jnp.einsum("nhwi,io->nhwo", x.astype(dtype), kernel.astype(dtype))
        if bias is not None:
            y = y + bias.astype(dtype)
        if head is None:
            return y
        n, h, w, _ = y.shape
        y = nn.relu(y).reshape(n, h, w, phases, channels)
        return jnp.einsum("nhwpc,nck->nhwpk", y, head.astype(dtype))


class _PointwiseParams(nn.Module):
    """nn.Conv(features, (1, 1))'s parameters for a fused use: (kernel (in, out), bias)."""

    in_features: int
    features: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        """The kernel as an (in, out) matrix and the bias, initialised as nn.Conv's."""
        shape = (1, 1, self.in_features, self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return kernel[0, 0], bias


class PixelShuffleUp(nn.Module):
    """DeOldify's CustomPixelShuffle_ICNR: 1x1 conv (-> BN), ReLU, shuffle, blur."""

    features: int
    scale: int = 2
    batch_norm: bool = True  # extra_bn: conv without bias, then a BatchNorm
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, head: jax.Array | None = None) -> jax.Array:
        """Upsample x by `scale` to `features` channels, or to K with ``head`` (N, features, K).

        ``head`` is a per-pixel linear map of the upsampled features (what DDColor's colour
        queries and refine conv do to them). Shuffle and blur act on each channel alone, so
        it commutes with them: applied before, they move K channels instead of `features`
        (DDColor: 2 instead of 256 at full resolution), and the same sums come out.
        """
        out = self.features * self.scale * self.scale
        conv = _PointwiseConv(out, use_bias=not self.batch_norm, dtype=self.dtype, name="conv_0")
        if head is not None:
            if self.batch_norm:
                raise ValueError("PixelShuffleUp takes a head only without BatchNorm")
            y = conv(x, head, self.scale)  # (N, H, W, s * s, K)
            n, h, w, _, k = y.shape
            y = y.reshape(n, h, w, self.scale, self.scale, k).transpose(0, 1, 3, 2, 4, 5)
            return blur(y.reshape(n, h * self.scale, w * self.scale, k))
        x = conv(x)
        if self.batch_norm:
            x = FrozenBatchNorm(out, name="conv_1")(x)
        return blur(pixel_shuffle(nn.relu(x), self.scale))


class UnetBlockWide(nn.Module):
    """Upsample the deeper map x2, join the BatchNorm'd skip, ReLU, 3x3 conv, ReLU, BatchNorm."""

    features: int
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, up_in: jax.Array, skip: jax.Array) -> jax.Array:
        """The block's output at the skip's resolution."""
        up = PixelShuffleUp(self.features, 2, True, self.dtype, name="shuf")(up_in)
        skip = FrozenBatchNorm(skip.shape[-1], name="bn")(skip)
        x = nn.relu(jnp.concatenate([up, skip], axis=-1))
        x = nn.Conv(
            self.features, (3, 3), padding=1, use_bias=False, dtype=self.dtype, name="conv_0"
        )(x)
        return FrozenBatchNorm(self.features, name="conv_2")(nn.relu(x))


def sine_position(h: int, w: int, features: int = HIDDEN // 2) -> jax.Array:
    """Mask2Former's PositionEmbeddingSine(normalize=True) of an h x w map: (h, w, 2*features)."""
    eps, scale = 1e-6, 2 * math.pi
    y = jnp.arange(1, h + 1, dtype=jnp.float32)[:, None] * jnp.ones((1, w))
    x = jnp.arange(1, w + 1, dtype=jnp.float32)[None, :] * jnp.ones((h, 1))
    y, x = y / (h + eps) * scale, x / (w + eps) * scale
    dim_t = 10000.0 ** (2 * (jnp.arange(features) // 2) / features)

    def embed(v: jax.Array) -> jax.Array:
        p = v[..., None] / dim_t
        return jnp.stack([jnp.sin(p[..., 0::2]), jnp.cos(p[..., 1::2])], axis=-1).reshape(h, w, -1)

    return jnp.concatenate([embed(y), embed(x)], axis=-1)


class Attention(nn.Module):
    """nn.MultiheadAttention (batch first here): q, k, v projections, heads, out projection."""

    dim: int = HIDDEN
    heads: int = HEADS
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, query: jax.Array, key: jax.Array, value: jax.Array) -> jax.Array:
        """Attend (N, Q, C) queries over (N, K, C) keys and values."""

        def split(x: jax.Array, name: str) -> jax.Array:
            y = nn.Dense(self.dim, dtype=self.dtype, name=name)(x)
            return y.reshape(*y.shape[:2], self.heads, self.dim // self.heads)

        q, k, v = split(query, "q_proj"), split(key, "k_proj"), split(value, "v_proj")
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(self.dim // self.heads)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(*query.shape[:2], self.dim)
        return nn.Dense(self.dim, dtype=self.dtype, name="out_proj")(out)


class ColorDecoder(nn.Module):
    """The multi-scale colour decoder: queries attend to the pixel decoder's maps in turn."""

    num_queries: int = 100
    layers: int = 9
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, pyramid: list[jax.Array], last: jax.Array | None = None) -> jax.Array:
        """(N, H, W, num_queries) maps from three feature maps and the full-resolution one.

        Without ``last``: the colour embeddings (N, num_queries, 256) the maps are made from
        (DDColor folds them into its refine conv instead of building the maps).
        """
        n = pyramid[0].shape[0]
        level = self.param("level_embed", nn.initializers.normal(1.0), (SCALES, HIDDEN))
        src, pos = [], []
        for i, feature in enumerate(pyramid):
            h, w = feature.shape[1:3]
            proj = nn.Conv(HIDDEN, (1, 1), dtype=self.dtype, name=f"input_proj_{i}")(feature)
            src.append(proj.reshape(n, h * w, HIDDEN) + level[i])
            pos.append(sine_position(h, w).reshape(1, h * w, HIDDEN))
        query_pos = self.param(
            "query_embed", nn.initializers.normal(1.0), (self.num_queries, HIDDEN)
        )
        out = self.param("query_feat", nn.initializers.normal(1.0), (self.num_queries, HIDDEN))
        query_pos = jnp.broadcast_to(query_pos, (n, *query_pos.shape))
        out = jnp.broadcast_to(out, (n, *out.shape))
        ln = lambda name: nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name=name)  # noqa: E731
        for i in range(self.layers):
            s = i % SCALES
            name = f"transformer_cross_attention_layers_{i}"
            att = Attention(dtype=self.dtype, name=f"{name}_multihead_attn")
            out = ln(f"{name}_norm")(out + att(out + query_pos, src[s] + pos[s], src[s]))
            name = f"transformer_self_attention_layers_{i}"
            att = Attention(dtype=self.dtype, name=f"{name}_self_attn")
            q = out + query_pos
            out = ln(f"{name}_norm")(out + att(q, q, out))
            name = f"transformer_ffn_layers_{i}"
            hidden = nn.relu(nn.Dense(FFN, dtype=self.dtype, name=f"{name}_linear1")(out))
            out = ln(f"{name}_norm")(
                out + nn.Dense(HIDDEN, dtype=self.dtype, name=f"{name}_linear2")(hidden)
            )
        out = ln("decoder_norm")(out)
        for j in range(3):
            out = nn.Dense(HIDDEN, dtype=self.dtype, name=f"color_embed_layers_{j}")(out)
            out = nn.relu(out) if j < 2 else out
        if last is None:
            return out
        return jnp.einsum("nqc,nhwc->nhwq", out, last)


class DDColor(nn.Module):
    """DDColor: normalised L (N, H, W, 1) -> normalised ab (N, H, W, 2); H, W multiples of 32.

    ``mesh``: the training step's mesh, taken like every family's; DDColor has no layer with a
    CPU kernel-gradient loop, so it changes nothing here.
    """

    encoder: str = "tiny"
    num_queries: int = 100
    dtype: Dtype | None = None
    mesh: Mesh | None = None

    stride: ClassVar[int] = 32

    @property
    def contract(self) -> ModelContract:
        """Regression-like: ab out directly; the input preprocessing is inside the module."""
        return ModelContract(task="regression", stride=32)

    def gray_rgb(self, l_norm: jax.Array) -> jax.Array:
        """The official inference's image: the gray (L, 0, 0) as RGB in [0, 1]."""
        return color.lab_inputs_to_rgb(l_norm, jnp.zeros((*l_norm.shape[:3], 2), jnp.float32))

    def official_input(self, l_norm: jax.Array) -> jax.Array:
        """What the network sees: the gray RGB with ImageNet's normalisation (as its forward)."""
        return (self.gray_rgb(l_norm) - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)

    @nn.compact
    def __call__(self, l_norm: jax.Array, train: bool = False) -> jax.Array:
        """Normalised ab, the official output / 110, clipped to [-128, 127] / 110."""
        del train  # no dropout or batch statistics: the same in both modes
        check_l_input(l_norm, self.stride, f"ddcolor-{self.encoder}", min_size=32)
        img = self.official_input(l_norm.astype(jnp.float32))
        feats = ConvNeXt(self.encoder, dtype=self.dtype, name="encoder")(
            img.astype(self.dtype or jnp.float32)
        )
        x = feats[3]
        pyramid = []
        for k, (skip, out_c) in enumerate(zip(feats[2::-1], (NF, NF, NF // 2), strict=True)):
            x = UnetBlockWide(out_c, dtype=self.dtype, name=f"decoder_layers_{k}")(x, skip)
            pyramid.append(x)
        embed = ColorDecoder(self.num_queries, dtype=self.dtype, name="decoder_color_decoder")(
            pyramid
        )
        # The official head: maps = embed . last (100 maps at full resolution), then a 1x1
        # conv of (maps, img) to ab. Both are linear per pixel, so the conv's map weights fold
        # into the embeddings first: a (256 -> 2) map per image, applied inside the last
        # upsampler before its shuffle and blur (they commute with it). Same sums, without
        # the 100 maps or the 256-channel full-resolution features (~40% of the time at 256
        # px on CPU: the einsum and the shuffle + blur of a 256-channel map).
        kernel, bias = _PointwiseParams(self.num_queries + 3, 2, name="refine_net_0_0")()
        dtype = self.dtype or embed.dtype
        embed = embed.astype(dtype)
        head = jnp.einsum("nqc,qk->nck", embed, kernel[: self.num_queries].astype(dtype))
        ab = PixelShuffleUp(
            NF // 2, 4, batch_norm=False, dtype=self.dtype, name="decoder_last_shuf"
        )(x, head)
        img_part = jnp.einsum("nhwi,ik->nhwk", img.astype(dtype), kernel[self.num_queries :])
        ab = ab + img_part.astype(ab.dtype) + bias.astype(ab.dtype)
        ab = jnp.clip(ab.astype(jnp.float32), *AB_RANGE)
        return ab / color.AB_SCALE


# ------------------------------------------------------------------- official weights

# Flax module names that stand for a dotted PyTorch path.
_DOTTED = {
    "decoder_layers": "decoder.layers",
    "decoder_last_shuf": "decoder.last_shuf",
    "decoder_color_decoder": "decoder.color_decoder",
    "color_embed_layers": "color_embed.layers",
}


def _torch_module(segment: str) -> str:
    """One Flax module name -> its PyTorch path ('conv_0' -> 'conv.0')."""
    for flat, dotted in _DOTTED.items():
        if segment.startswith(flat):
            segment = dotted + segment[len(flat) :]
    segment = re.sub(r"_(\d+)(?=_|$)", r".\1", segment)
    return re.sub(r"(\.\d+)_", r"\1.", segment)


def spectral_weight(state: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    """A spectral-normed weight as PyTorch uses it in eval mode: weight_orig / (u . W v)."""
    w = np.asarray(state[key + "_orig"], np.float64)
    u = np.asarray(state[key + "_u"], np.float64)
    v = np.asarray(state[key + "_v"], np.float64)
    sigma = float(u @ (w.reshape(w.shape[0], -1) @ v))
    return (w / sigma).astype(np.float32)


def _weight(state: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    """state[key], or the baked spectral-normed weight where the file holds weight_orig."""
    if key in state:
        return np.asarray(state[key], np.float32)
    if key + "_orig" in state:
        return spectral_weight(state, key)
    raise KeyError(key)


def _leaf(state: Mapping[str, np.ndarray], module: str, path: tuple[str, ...]) -> np.ndarray:
    """The Flax value of one parameter (module: its PyTorch path) from the state dict."""
    leaf, parent = path[-1], path[-2] if len(path) > 1 else ""
    if parent in ("q_proj", "k_proj", "v_proj"):
        which = ("q_proj", "k_proj", "v_proj").index(parent)
        full = _weight(state, f"{module}.in_proj_{'weight' if leaf == 'kernel' else 'bias'}")
        part = np.split(full, 3, axis=0)[which]
        return part.T if leaf == "kernel" else part
    if leaf in ("level_embed", "query_embed", "query_feat"):
        return _weight(state, f"{module}.{leaf}.weight" if module else f"{leaf}.weight")
    if leaf in ("scale", "shift") and f"{module}.running_var" in state:  # frozen BatchNorm
        w, b = _weight(state, f"{module}.weight"), _weight(state, f"{module}.bias")
        mean = _weight(state, f"{module}.running_mean")
        scale = w / np.sqrt(_weight(state, f"{module}.running_var") + BN_EPS)
        return scale if leaf == "scale" else b - mean * scale
    if leaf == "scale":  # LayerNorm
        return _weight(state, f"{module}.weight")
    if leaf == "bias":
        return _weight(state, f"{module}.bias")
    value = _weight(state, f"{module}.weight")  # kernel
    return np.transpose(value, (2, 3, 1, 0)) if value.ndim == 4 else value.T


def state_dict_to_params(state: Mapping[str, Any], encoder: str = "tiny") -> dict[str, Any]:
    """Flax params of DDColor from the official state dict (a 'params' wrapper is accepted).

    Spectral norm is baked (weight_orig / sigma from weight_u and weight_v), BatchNorm frozen
    into scale and shift, each attention's in_proj split into q, k and v. WeightsError names
    the first key that is missing or of the wrong shape.
    """
    if "params" in state and isinstance(state["params"], Mapping):
        state = state["params"]
    state = _ReadKeys((k.removeprefix("module."), v) for k, v in state.items())
    model = DDColor(encoder)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))
    flat = {("encoder",): convnext_params(state, encoder, prefix="encoder.arch.")}
    for keypath, spec in jax.tree_util.tree_flatten_with_path(shapes["params"])[0]:
        path = tuple(k.key for k in keypath)
        if path[0] == "encoder":
            continue
        modules = [p for p in path[:-1] if p not in ("q_proj", "k_proj", "v_proj")]
        module = ".".join(_torch_module(m) for m in modules)
        try:
            value = _leaf(state, module, path)
        except KeyError as err:
            raise WeightsError(
                f"the state dict has no {err.args[0]!r} (for DDColor {'/'.join(path)}); it is "
                f"not an official DDColor with a ConvNeXt-{encoder} encoder"
            ) from None
        if value.shape != tuple(spec.shape):
            raise WeightsError(
                f"{module} gives shape {value.shape} for {'/'.join(path)}, DDColor-{encoder} "
                f"expects {tuple(spec.shape)}; the file is for another size"
            )
        flat[path] = value
    for key, want in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        # The official module keeps its input normalisation as buffers; this port builds it in.
        if key in state and not np.allclose(np.ravel(state[key]), want, atol=1e-6):
            raise WeightsError(
                f"the state dict's input {key} is {np.ravel(state[key]).tolist()}, not "
                f"ImageNet's {list(want)}; these are not DDColor weights colorjax can run"
            )
    unused = sorted(k for k in set(state) - state.read if not k.endswith(_UNUSED_SUFFIXES))
    unused = [k for k in unused if not k.startswith(_UNUSED_PREFIXES)]
    if unused:
        raise WeightsError(
            f"the state dict has {len(unused)} entries DDColor-{encoder} does not have "
            f"({', '.join(unused[:3])}); it is from another architecture or size"
        )
    return traverse_util.unflatten_dict(flat)


# Official entries the network never uses: BatchNorm counters, the spectral norm's power-
# iteration vectors once baked, and the ConvNeXt classifier's norm and head.
_UNUSED_SUFFIXES = (".num_batches_tracked", ".weight_u", ".weight_v")
_UNUSED_PREFIXES = ("encoder.arch.norm.", "encoder.arch.head")


class _ReadKeys(dict):
    """A state dict that remembers which entries were read (to find the ones nobody used)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


# ----------------------------------------------------------------------------- registered variants

register_model(
    "ddcolor-tiny",
    "ddcolor",
    DDColor,
    "Kang et al. ICCV 2023: ConvNeXt-T encoder, pixel decoder and 100-query colour decoder; "
    "official weights (ddcolor-paper-tiny) convert from PyTorch",
    encoder="tiny",
)
register_model(
    "ddcolor-large",
    "ddcolor",
    DDColor,
    "Kang et al. ICCV 2023: ConvNeXt-L encoder, pixel decoder and 100-query colour decoder; "
    "official weights (ddcolor-paper, -modelscope, -artistic) convert from PyTorch",
    encoder="large",
)
