"""ColorNet on an ImageNet-trained encoder: EfficientNet-Lite features, a U-Net decoder, ab bins.

The from-scratch ColorNet learned the colour prior, not the scene: it cannot know that a slope
is grass. Here the low-level and global features come from EfficientNet-Lite trained on ImageNet
(it names the class of most photos even in gray), as in Iizuka et al., whose global branch was
trained as a classifier; here the classifier comes trained.

Layout (sizes relative to the input H x W, both multiples of 32):

- encoder input: the gray sRGB photo of L, three equal channels scaled to [-1, 1]
  (`gray_encoder_input`), the encoder's own normalisation;
- encoder (``encoder``): EfficientNet-Lite features at H/4, H/8, H/16 and H/32 and the pooled
  1280-wide embedding of its classifier head. With ``freeze_encoder`` (the first training stage)
  no gradient reaches it; the parameter tree is the same either way, so a later stage fine-tunes
  it with ``model.overrides.freeze_encoder=false``;
- global: a Dense of the embedding (the scene vector) tiled over H/32 beside the last feature
  map and fused by a conv (Iizuka et al.'s fusion);
- decoder: per stage x2 nearest upsampling, the encoder's map of that resolution concatenated
  (U-Net skips: the early-stride maps carry the edges colour must follow), then convs;
- head at H/4: logits over the in-gamut ab bins (Zhang et al.; decoded with the annealed mean and
  upsampled), or tanh ab for ``head='regression'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.errors import ConfigError
from colorjax.models.backbones import EfficientNetLite, gray_encoder_input
from colorjax.models.colornet import HEADS, num_ab_bins
from colorjax.models.layers import Conv1x1, ConvNormAct, Dtype, check_l_input, upsample2x
from colorjax.models.registry import ModelContract, register_model


class LiteColorNet(nn.Module):
    """EfficientNet-Lite encoder + U-Net decoder: L (N,H,W,1) -> ab-bin logits at H/4 (or ab).

    Attributes:
      encoder_variant: 'lite0', 'lite1' or 'lite2' (its ImageNet weights start training).
      freeze_encoder: stop gradients at the encoder's outputs (same parameters either way).
      global_features: width of the scene vector from the encoder's pooled embedding.
      decoder_features: widths at H/16, H/8 and H/4.
      head: 'classification' (logits over ab bins) or 'regression' (tanh ab).
      num_classes: Q; None means len(gamut.ab_bin_centers()).
      dtype: compute dtype (params float32; outputs float32).
      mesh: the jax.sharding.Mesh the training step shards the batch over, or None; on CPU
        the per-sample kernel-gradient loops run per device on it (None: one loop). Not
        a parameter and not serialised: the training code passes it, inference leaves None.
    """

    encoder_variant: str = "lite2"
    freeze_encoder: bool = True
    global_features: int = 256
    decoder_features: Sequence[int] = (256, 128, 96)
    head: str = "classification"
    num_classes: int | None = None
    dtype: Dtype = jnp.float32
    mesh: Mesh | None = None

    stride: ClassVar[int] = 32
    head_stride: ClassVar[int] = 4

    @property
    def contract(self) -> ModelContract:
        """Bin logits (or ab) at H/4; the encoder starts from ImageNet weights, maybe frozen."""
        return ModelContract(
            task=self.head,
            stride=self.stride,
            pretrained_encoder=self.encoder_variant,
            frozen=("encoder",) if self.freeze_encoder else (),
        )

    def __post_init__(self) -> None:
        """Validate the configuration at construction."""
        if self.head not in HEADS:
            raise ConfigError(f"unknown LiteColorNet head {self.head!r}; choose one of {HEADS}.")
        if len(self.decoder_features) != 3:
            raise ConfigError(
                "LiteColorNet decoder_features needs 3 widths (H/16, H/8, H/4), "
                f"got {self.decoder_features}."
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, l_norm: jax.Array, train: bool = False) -> jax.Array:
        """Predict ab-bin logits at H/4 (classification) or ab at H/4 (regression) for L."""
        del train  # frozen BatchNorm and no dropout: train and eval are the same function
        check_l_input(l_norm, self.stride, "LiteColorNet")
        encoded = EfficientNetLite(
            self.encoder_variant,
            num_classes=0,
            include_head=True,
            dtype=self.dtype,
            name="encoder",
        )(gray_encoder_input(l_norm))
        _, s4, s8, s16, s32 = encoded["features"]
        embedding = encoded["embedding"]
        if self.freeze_encoder:
            s4, s8, s16, s32, embedding = jax.lax.stop_gradient((s4, s8, s16, s32, embedding))

        g = nn.relu(
            nn.Dense(self.global_features, dtype=self.dtype, param_dtype=jnp.float32, name="scene")(
                embedding.astype(self.dtype)
            )
        )
        n, h, w, _ = s32.shape
        tiled = jnp.broadcast_to(g[:, None, None, :], (n, h, w, g.shape[-1]))
        x = jnp.concatenate([s32, tiled.astype(s32.dtype)], axis=-1)
        conv_kw = {"dtype": self.dtype, "mesh": self.mesh}
        x = ConvNormAct(self.decoder_features[0], name="fusion", **conv_kw)(x)

        for i, (skip, feats) in enumerate(zip((s16, s8, s4), self.decoder_features, strict=True)):
            x = jnp.concatenate([upsample2x(x), skip.astype(x.dtype)], axis=-1)
            x = ConvNormAct(feats, name=f"decoder_{i}_a", **conv_kw)(x)
            x = ConvNormAct(feats, name=f"decoder_{i}_b", **conv_kw)(x)

        if self.head == "regression":
            ab = Conv1x1(2, dtype=self.dtype, name="head")(x)
            return jnp.tanh(ab.astype(jnp.float32))
        q = self.num_classes if self.num_classes is not None else num_ab_bins()
        return Conv1x1(q, dtype=self.dtype, name="head")(x).astype(jnp.float32)


register_model(
    "colornet-lite2-cls4",
    "colornet-lite",
    LiteColorNet,
    "ColorNet on an ImageNet EfficientNet-Lite2 encoder (U-Net skips), ab-bin logits at H/4",
    head="classification",
    encoder_variant="lite2",
)
register_model(
    "colornet-lite0-cls4",
    "colornet-lite",
    LiteColorNet,
    "ColorNet on an ImageNet EfficientNet-Lite0 encoder (U-Net skips), ab-bin logits at H/4",
    head="classification",
    encoder_variant="lite0",
    decoder_features=(192, 96, 64),
)
