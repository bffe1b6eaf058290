"""ColorNet: global/local fusion colorizer (Iizuka et al. 2016) with regression or 313-bin heads.

Layout (all spatial sizes relative to the input H x W):

- low-level encoder (shared): three stages, each a stride-2 conv then a stride-1 conv -> H/8;
- mid-level branch: stride-1 convs on the H/8 map, keeps spatial detail;
- global branch: strided convs -> global mean pooling -> dense layers -> one scene vector per
  image. Mean pooling (instead of Iizuka's fixed 224x224 flatten) makes it input-size independent;
- fusion: the scene vector is tiled over every H/8 position, concatenated with the mid-level
  features and mixed by a 1x1 conv. With ``fusion='film'`` the scene vector instead scales and
  shifts the fusion conv's normalised features per channel (FiLM), after its GroupNorm, through
  a zero-initialised Dense. Why: in the concat net the global branch died in every run (99 % of
  ``global_dense_0`` never positive on a photo). The norm subtracts much of a per-image constant,
  and a freshly drawn branch first injects noise into a trained fusion conv, which the optimiser
  removes fastest by driving the branch to a constant (measured: GELU units went from 0 % to
  100 % never positive in 2,000 steps). Zero-initialised FiLM injects nothing at first, and the
  branch only gets gradient where a modulation helps;
- scene head (``scene_head=True``): a Dense from the scene vector to Q logits of the image's
  ab-bin histogram, its palette. Trained with ``loss.scene_weight`` > 0, it gives the global
  branch a direct signal (Iizuka et al. train theirs with scene labels; the palette needs none).
  Its logits are sown into the 'aux' collection only when the caller makes that collection
  mutable (the train step), so inference and the output are unchanged;
- decoder: per stage conv -> resize x2 -> conv (resize + conv avoids checkerboard artefacts),
  back to H x W;
- head: 1x1 conv to 2 channels + tanh (normalised ab, 'regression') or to Q logits over the
  in-gamut ab bins ('classification', Zhang et al. 2016; decode with the annealed mean).
  With ``head_stride`` 4 the decoder stops upsampling at H/4 and the head predicts there, as
  Zhang et al. do: chrominance is smooth, so the 16x fewer Q-way logits lose little colour
  detail and make a classification step several times cheaper; ``predict_ab`` upsamples the
  decoded ab to H x W.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.errors import ConfigError
from colorjax.models.layers import (
    Conv1x1,
    ConvNormAct,
    Dtype,
    check_l_input,
    check_upsample_method,
    upsample2x,
)
from colorjax.models.registry import ModelContract, register_model

HEADS = ("regression", "classification")
FUSIONS = ("concat", "film")
ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu}


def num_ab_bins() -> int:
    """Number Q of in-gamut ab bins, from colorjax.gamut (imported lazily)."""
    from colorjax.gamut import ab_bin_centers

    return int(len(ab_bin_centers()))


class ColorNet(nn.Module):
    """Global/local fusion colorization network: L (N,H,W,1) -> ab (N,H,W,2) or logits (N,H,W,Q).

    Attributes:
      head: 'regression' (tanh ab in [-1, 1]) or 'classification' (logits over ab bins).
      low_features: 4 widths; stage i is conv(low[i], stride 2) then conv(low[i+1], stride 1).
      mid_features: widths of the stride-1 mid-level convs.
      global_features: widths of the global convs (stride 2 at even positions, 1 at odd).
      global_dense: widths of the dense layers after pooling; the last is the scene vector size.
      fusion_features: output width of the 1x1 fusion conv.
      fusion: 'concat' (Iizuka et al.: tiled scene vector concatenated before the fusion conv) or
        'film' (the fusion conv sees the mid-level features only; the scene vector scales and
        shifts its normalised output per channel through the Dense 'fusion_film', which starts
        at zero, so the net starts independent of its global branch).
      global_activation: 'relu' or 'gelu' after each global dense layer ('gelu' has no
        absorbing dead state).
      scene_head: add the palette head ('scene_head', Q logits from the scene vector).
      decoder_features: 3 widths, one per x2 upsampling stage.
      upsample: 'nearest' or 'bilinear'.
      num_classes: Q for the classification head; None means len(gamut.ab_bin_centers()).
      head_stride: output resolution divisor (1, 2, 4 or 8): the decoder upsamples only down to
        H/head_stride; later decoder stages run at that resolution. 1 keeps the original net.
      dtype: compute dtype (params are always float32; outputs are cast to float32).
      mesh: the jax.sharding.Mesh the training step shards the batch over, or None; on CPU
        the per-sample kernel-gradient loops run per device on it (None: one loop). Not
        a parameter and not serialised: the training code passes it, inference leaves None.
    """

    head: str = "regression"
    low_features: Sequence[int] = (64, 128, 256, 512)
    mid_features: Sequence[int] = (512, 256)
    global_features: Sequence[int] = (512, 512, 512, 512)
    global_dense: Sequence[int] = (1024, 512, 256)
    fusion_features: int = 256
    fusion: str = "concat"
    global_activation: str = "relu"
    scene_head: bool = False
    decoder_features: Sequence[int] = (128, 64, 32)
    upsample: str = "nearest"
    num_classes: int | None = None
    head_stride: int = 1
    dtype: Dtype = jnp.float32
    mesh: Mesh | None = None

    def __post_init__(self) -> None:
        """Validate the configuration so a bad override fails at construction, not in apply."""
        if self.head not in HEADS:
            raise ConfigError(f"unknown ColorNet head {self.head!r}; choose one of {HEADS}.")
        if len(self.low_features) != 4:
            raise ConfigError(
                "ColorNet low_features needs 4 widths (3 stride-2 stages), "
                f"got {self.low_features}."
            )
        if len(self.decoder_features) != 3:
            raise ConfigError(
                "ColorNet decoder_features needs 3 widths (one per x2 upsampling stage), "
                f"got {self.decoder_features}."
            )
        if not self.global_dense:
            raise ConfigError("ColorNet global_dense needs at least one width (the scene vector).")
        if self.head_stride not in (1, 2, 4, 8):
            raise ConfigError(
                f"ColorNet head_stride must be 1, 2, 4 or 8 (output at H/head_stride), "
                f"got {self.head_stride}."
            )
        if self.fusion not in FUSIONS:
            raise ConfigError(f"unknown ColorNet fusion {self.fusion!r}; choose one of {FUSIONS}.")
        if self.global_activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown ColorNet global_activation {self.global_activation!r}; "
                f"choose one of {tuple(ACTIVATIONS)}."
            )
        check_upsample_method(self.upsample)
        super().__post_init__()

    @property
    def stride(self) -> int:
        """Required divisor of H and W: the encoder downsamples three times by 2."""
        return 8

    @property
    def contract(self) -> ModelContract:
        """Regression or bin logits at H/head_stride; a palette head when scene_head."""
        return ModelContract(task=self.head, stride=self.stride, palette_head=self.scene_head)

    @nn.compact
    def __call__(self, l_norm: jax.Array, train: bool = False) -> jax.Array:
        """Predict normalised ab (regression) or ab-bin logits (classification) for L."""
        del train  # no dropout or batch statistics: train and eval are the same function
        check_l_input(l_norm, self.stride, "ColorNet")
        x = l_norm.astype(self.dtype)
        conv_kw = {"dtype": self.dtype, "mesh": self.mesh}

        # Low-level features, shared by the mid-level and global branches.
        low = self.low_features
        for i in range(3):
            x = ConvNormAct(low[i], stride=2, name=f"low_{2 * i}", **conv_kw)(x)
            x = ConvNormAct(low[i + 1], name=f"low_{2 * i + 1}", **conv_kw)(x)

        mid = x
        for i, feats in enumerate(self.mid_features):
            mid = ConvNormAct(feats, name=f"mid_{i}", **conv_kw)(mid)

        g = x
        for i, feats in enumerate(self.global_features):
            g = ConvNormAct(
                feats, stride=2 if i % 2 == 0 else 1, name=f"global_conv_{i}", **conv_kw
            )(g)
        # Mean over space in float32: a size-independent scene summary, stable in bf16.
        g = jnp.mean(g.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        act = ACTIVATIONS[self.global_activation]
        for i, feats in enumerate(self.global_dense):
            g = act(
                nn.Dense(
                    feats, dtype=self.dtype, param_dtype=jnp.float32, name=f"global_dense_{i}"
                )(g)
            )

        if self.scene_head:
            q = self.num_classes if self.num_classes is not None else num_ab_bins()
            palette = nn.Dense(q, dtype=self.dtype, param_dtype=jnp.float32, name="scene_head")(g)
            if self.is_mutable_collection("aux") and not self.is_initializing():
                self.sow("aux", "scene_logits", palette.astype(jnp.float32))

        # Fusion: the scene vector tiled beside the local features (concat) or modulating them.
        film = None
        if self.fusion == "concat":
            n, h, w, _ = mid.shape
            tiled = jnp.broadcast_to(g[:, None, None, :], (n, h, w, g.shape[-1]))
            x = jnp.concatenate([mid, tiled.astype(mid.dtype)], axis=-1)
        else:
            x = mid
            # Zero-initialised, the scale a residual 1 + s: the net starts as if it had no
            # global branch, which therefore cannot inject noise into a trained fusion conv.
            film = nn.Dense(
                2 * self.fusion_features,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                kernel_init=nn.initializers.zeros,
                name="fusion_film",
            )(g)
            film = jnp.split(film, 2, axis=-1)
        x = ConvNormAct(self.fusion_features, kernel=1, name="fusion", **conv_kw)(x, film)

        current_stride = self.stride
        for i, feats in enumerate(self.decoder_features):
            x = ConvNormAct(feats, name=f"decoder_{i}_a", **conv_kw)(x)
            # Nearest upsampling is fused into the next conv (same function, computed at the
            # low resolution on CPU); bilinear stays a separate resize.
            fuse = False
            if current_stride > self.head_stride:
                fuse = self.upsample == "nearest"
                if not fuse:
                    x = upsample2x(x, self.upsample)
                current_stride //= 2
            x = ConvNormAct(feats, upsample_input=fuse, name=f"decoder_{i}_b", **conv_kw)(x)

        if self.head == "regression":
            ab = Conv1x1(2, dtype=self.dtype, name="head")(x)
            return jnp.tanh(ab.astype(jnp.float32))
        q = self.num_classes if self.num_classes is not None else num_ab_bins()
        logits = Conv1x1(q, dtype=self.dtype, name="head")(x)
        return logits.astype(jnp.float32)


# ----------------------------------------------------------------------------- registered variants

# Widths of the small variants; the defaults above are the Iizuka et al. widths ("base").
TINY_WIDTHS = {
    "low_features": (16, 32, 64, 128),
    "mid_features": (128, 64),
    "global_features": (64, 64, 128, 128),
    "global_dense": (256, 128, 64),
    "fusion_features": 64,
    "decoder_features": (64, 32, 16),
}
SMALL_WIDTHS = {
    "low_features": (32, 64, 128, 256),
    "mid_features": (256, 128),
    "global_features": (128, 128, 256, 256),
    "global_dense": (512, 256, 128),
    "fusion_features": 128,
    "decoder_features": (128, 64, 64),
}

register_model(
    "colornet-tiny",
    "colornet",
    ColorNet,
    "ColorNet, tiny widths, ab regression; trains on a laptop CPU at 64 px",
    head="regression",
    **TINY_WIDTHS,
)
register_model(
    "colornet-tiny-cls",
    "colornet",
    ColorNet,
    "ColorNet, tiny widths, logits over the in-gamut ab bins (annealed-mean decoding)",
    head="classification",
    **TINY_WIDTHS,
)
register_model(
    "colornet-small-cls4",
    "colornet",
    ColorNet,
    "ColorNet, small widths, ab-bin logits at H/4 (Zhang et al.), upsampled after decoding",
    head="classification",
    head_stride=4,
    **SMALL_WIDTHS,
)
register_model(
    "colornet-small-cls4-film",
    "colornet",
    ColorNet,
    "colornet-small-cls4 whose scene vector scales/shifts the fused features (FiLM) and "
    "predicts the photo's ab palette",
    head="classification",
    head_stride=4,
    fusion="film",
    global_activation="gelu",
    scene_head=True,
    **SMALL_WIDTHS,
)
register_model(
    "colornet-base",
    "colornet",
    ColorNet,
    "ColorNet with Iizuka et al. 2016 widths, ab regression",
    head="regression",
)
register_model(
    "colornet-base-cls",
    "colornet",
    ColorNet,
    "ColorNet with Iizuka et al. 2016 widths, Zhang et al. 2016 ab-bin classification",
    head="classification",
)
