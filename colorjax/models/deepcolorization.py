"""DeepColorization: conditional GAN colorizer (pix2pix, Isola et al. 2017).

Generator: U-Net L -> ab with skip connections. Encoder blocks are conv 4x4 stride 2 (widths
ngf * min(2**i, 8)) with LeakyReLU(0.2) before every block but the first and instance norm on
every block but the outermost and innermost, as in pix2pix. Decoder blocks are ReLU -> 4x4
stride-2 transposed conv -> instance norm, with dropout 0.5 in the first `num_dropout` decoder
blocks when train=True (the paper's CD512-CD512-CD512), each concatenated with the mirrored
encoder activation; the last block outputs 2 channels through tanh (normalised ab).

Discriminator: PatchGAN on concat(L, ab): C64-C128-C256 stride 2, C512 stride 1, a 1-channel
conv stride 1, all 4x4 with padding 1 (70x70 receptive field at the default n_layers=3).
Instance norm (no running statistics) instead of batch norm keeps apply pure.

``generator='colornet'`` swaps the U-Net for a ColorNet classification net (global/local fusion,
ab-bin logits, usually at quarter resolution; Iizuka et al. / Zhang et al.) whose annealed-mean
ab is what the discriminator sees: the DeOldify-style "NoGAN" recipe pretrains it with the
colour loss as a plain ColorNet, then a short adversarial phase sharpens it. The U-Net trained
from scratch with L1 + GAN on a CPU budget gives pastel, blotchy colour.

``generator='colornet-lite'`` is DeOldify's generator proper: a U-Net whose down path is an
ImageNet-trained encoder (EfficientNet-Lite; `colornet_lite.LiteColorNet`), pretrained as
ColorNet-Lite with the colour loss (NoGAN), then the same short adversarial phase.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from colorjax.errors import ConfigError
from colorjax.models.colornet import SMALL_WIDTHS, ColorNet
from colorjax.models.colornet_lite import LiteColorNet
from colorjax.models.conv4x4 import DownConv, PatchConv, UpConv
from colorjax.models.layers import (
    Dtype,
    check_ab_input,
    check_l_input,
    conv_receptive_field,
    instance_norm,
)
from colorjax.models.predict import decode_bins
from colorjax.models.registry import ModelContract, register_model

GENERATORS = ("unet", "colornet", "colornet-lite")
# Generators that predict ab-bin logits, decoded here with the annealed mean.
BIN_GENERATORS = ("colornet", "colornet-lite")


def _half_keep_mask(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Bernoulli(0.5) keep mask from 32 mask bits per random uint32 word.

    Why: pix2pix's dropout rate is 0.5, for which every random bit is one fair draw; drawing
    one 32-bit word per element (jax.random.bernoulli) makes threefry ~2 % of the U-Net GAN's
    CPU train step, unpacking 32 bits per word ~1/32 of that.
    """
    size = math.prod(shape)
    words = jax.random.bits(key, (-(-size // 32),), jnp.uint32)
    bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return bits.reshape(-1)[:size].reshape(shape).astype(bool)


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout as nn.Dropout: zero each element with probability `rate`, scale the rest."""
    if rate >= 1.0:
        return jnp.zeros_like(x)
    if rate == 0.5:
        keep = _half_keep_mask(key, x.shape)
    else:
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def patchgan_layers(n_layers: int = 3) -> list[tuple[int, int]]:
    """(kernel, stride) of every PatchGAN conv for `n_layers` stride-2 layers."""
    return [(4, 2)] * n_layers + [(4, 1), (4, 1)]


def patchgan_receptive_field(n_layers: int = 3) -> int:
    """Receptive field (pixels) of one PatchGAN output logit; 70 for the default n_layers=3."""
    return conv_receptive_field(patchgan_layers(n_layers))


def patchgan_output_size(size: int, n_layers: int = 3) -> int:
    """Spatial size of the PatchGAN logit map for an input of `size` pixels (4x4 convs, pad 1)."""
    for kernel, stride in patchgan_layers(n_layers):
        size = (size + 2 - kernel) // stride + 1
    return size


class UNetGenerator(nn.Module):
    """pix2pix U-Net generator: normalised L (N,H,W,1) -> normalised ab (N,H,W,2) via tanh.

    `mesh`: the training step's mesh for the CPU kernel-gradient loops (see DeepColorization).
    """

    ngf: int = 64
    num_downs: int = 8
    dropout_rate: float = 0.5
    num_dropout: int = 3
    dtype: Dtype = jnp.float32
    mesh: Mesh | None = None

    @nn.compact
    def __call__(self, l_norm: jax.Array, train: bool = False) -> jax.Array:
        """Run the encoder, then the decoder with skip connections and dropout when training."""
        conv_kw = {"dtype": self.dtype, "param_dtype": jnp.float32, "mesh": self.mesh}
        widths = [self.ngf * min(2**i, 8) for i in range(self.num_downs)]
        x = l_norm.astype(self.dtype)
        skips = []
        for i, feats in enumerate(widths):
            if i > 0:
                x = nn.leaky_relu(x, 0.2)
            x = DownConv(feats, name=f"down_{i}", **conv_kw)(x)
            if 0 < i < self.num_downs - 1:
                x = instance_norm(x, dtype=self.dtype)
            skips.append(x)

        x = skips.pop()
        for step, i in enumerate(reversed(range(self.num_downs))):
            x = nn.relu(x)
            out_feats = 2 if i == 0 else widths[i - 1]
            # UpConv == nn.ConvTranspose(out_feats, (4, 4), (2, 2), padding=((2, 2), (2, 2))),
            # same parameters, computed in a form XLA:CPU differentiates fast.
            x = UpConv(out_feats, name=f"up_{i}", **conv_kw)(x)
            if i == 0:
                return jnp.tanh(x.astype(jnp.float32))
            x = instance_norm(x, dtype=self.dtype)
            if train and step < self.num_dropout and self.dropout_rate > 0:
                x = dropout(x, self.dropout_rate, self.make_rng("dropout"))
            x = jnp.concatenate([skips.pop(), x], axis=-1)
        raise AssertionError("unreachable: the outermost decoder block returns")


class PatchDiscriminator(nn.Module):
    """PatchGAN: (L, ab) pair -> one real/fake logit per overlapping patch, (N, h, w, 1).

    `mesh`: the training step's mesh for the CPU kernel-gradient loops (see DeepColorization).
    """

    ndf: int = 64
    n_layers: int = 3
    norm: str = "instance"
    dtype: Dtype = jnp.float32
    mesh: Mesh | None = None

    @nn.compact
    def __call__(self, pair: jax.Array) -> jax.Array:
        """Score every receptive-field patch of the 3-channel (L, ab) input."""
        conv_kw = {"dtype": self.dtype, "param_dtype": jnp.float32, "mesh": self.mesh}
        x = pair.astype(self.dtype)
        x = nn.leaky_relu(DownConv(self.ndf, name="conv_0", **conv_kw)(x), 0.2)
        for n in range(1, self.n_layers + 1):
            feats = self.ndf * min(2**n, 8)
            if n < self.n_layers:
                x = DownConv(feats, name=f"conv_{n}", **conv_kw)(x)
            else:
                x = PatchConv(feats, name=f"conv_{n}", **conv_kw)(x)
            if self.norm == "instance":
                x = instance_norm(x, dtype=self.dtype)
            x = nn.leaky_relu(x, 0.2)
        last = f"conv_{self.n_layers + 1}"
        # PatchConv == nn.Conv(1, (4, 4), padding=1), same parameters; its CPU kernel gradient
        # avoids XLA:CPU's slow path for a 1-channel output.
        x = PatchConv(1, name=last, **conv_kw)(x)
        return x.astype(jnp.float32)


class DeepColorization(nn.Module):
    """pix2pix colorizer: params {'generator', 'discriminator'}; __call__ runs the generator.

    `model.init(rng, l_norm)` creates both subtrees. `model.apply(variables, l_norm, ab_norm,
    method='discriminate')` returns PatchGAN logits. `mesh` (a jax.sharding.Mesh or None) is the
    mesh the training step shards the batch over; on CPU the per-sample kernel-gradient loops
    of both subnetworks run per device on it (None: one loop). It is passed to the generator
    and the discriminator, is no parameter and is never serialised (not in `colornet`).
    """

    ngf: int = 64
    ndf: int = 64
    num_downs: int = 8
    n_layers_d: int = 3
    dropout_rate: float = 0.5
    num_dropout: int = 3
    disc_norm: str = "instance"
    generator_arch: str = "unet"
    colornet: tuple = ()  # ColorNet / LiteColorNet kwargs as (key, value) pairs (hashable)
    temperature: float = 0.38  # annealed-mean temperature of the 'colornet' generator
    dtype: Dtype = jnp.float32
    mesh: Mesh | None = None

    def __post_init__(self) -> None:
        """Validate the configuration so a bad override fails at construction, not in apply."""
        if self.generator_arch not in GENERATORS:
            raise ConfigError(
                f"unknown generator_arch {self.generator_arch!r}; choose one of {GENERATORS}."
            )
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}.")
        if self.num_downs < 2:
            raise ConfigError(f"DeepColorization num_downs must be >= 2, got {self.num_downs}.")
        if self.n_layers_d < 1:
            raise ConfigError(f"DeepColorization n_layers_d must be >= 1, got {self.n_layers_d}.")
        if self.disc_norm not in ("instance", "none"):
            raise ConfigError(f"unknown disc_norm {self.disc_norm!r}; choose 'instance' or 'none'.")
        super().__post_init__()

    @property
    def stride(self) -> int:
        """Required divisor of H and W: the U-Net halves the size num_downs times."""
        if self.generator_arch in BIN_GENERATORS:
            return self._colornet().stride
        return 2**self.num_downs

    @property
    def contract(self) -> ModelContract:
        """A GAN; with a ColorNet generator it decodes its own bins and returns their logits."""
        bins = self.generator_arch in BIN_GENERATORS
        generator = self._colornet().contract if self.generator_arch == "colornet-lite" else None
        return ModelContract(
            task="gan",
            stride=self.stride,
            decodes_bins=bins,
            bin_logits_generator=bins,
            pretrained_encoder=generator.pretrained_encoder if generator else None,
            frozen=generator.frozen if generator else (),
        )

    def _colornet(self) -> ColorNet | LiteColorNet:
        """The ColorNet (or LiteColorNet) generator, classification head, from `colornet`."""
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(self.colornet).items()}
        kwargs.update(head="classification", dtype=self.dtype, mesh=self.mesh)
        cls = LiteColorNet if self.generator_arch == "colornet-lite" else ColorNet
        return cls(**kwargs, parent=None)

    @property
    def receptive_field(self) -> int:
        """Receptive field in pixels of one discriminator logit."""
        return patchgan_receptive_field(self.n_layers_d)

    def setup(self) -> None:
        """Create the two subnetworks under the 'generator' and 'discriminator' names."""
        if self.generator_arch in BIN_GENERATORS:
            self.generator = self._colornet().clone(parent=self, name="generator")
        else:
            self.generator = UNetGenerator(
                ngf=self.ngf,
                num_downs=self.num_downs,
                dropout_rate=self.dropout_rate,
                num_dropout=self.num_dropout,
                dtype=self.dtype,
                mesh=self.mesh,
            )
        self.discriminator = PatchDiscriminator(
            ndf=self.ndf,
            n_layers=self.n_layers_d,
            norm=self.disc_norm,
            dtype=self.dtype,
            mesh=self.mesh,
        )

    def _disc_min_size(self) -> int:
        """Smallest input size whose PatchGAN map is at least 1x1."""
        size = 2**self.n_layers_d
        while patchgan_output_size(size, self.n_layers_d) < 1:
            size += 2**self.n_layers_d
        return size

    def __call__(
        self, l_norm: jax.Array, train: bool = False, temperature: float | None = None
    ) -> jax.Array:
        """Generate normalised ab (N,H,W,2) from L; init also builds the discriminator."""
        return self.generate(l_norm, train=train, temperature=temperature)[0]

    def generate(
        self, l_norm: jax.Array, train: bool = False, temperature: float | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """(normalised ab (N,H,W,2), bin logits of a 'colornet' generator or None).

        `temperature` overrides the annealed-mean T of a 'colornet' generator (inference knob).
        """
        check_l_input(l_norm, self.stride, "DeepColorization", min_size=self._disc_min_size())
        logits = None
        if self.generator_arch in BIN_GENERATORS:
            logits = self.generator(l_norm, train=train)
            temp = self.temperature if temperature is None else temperature
            ab = decode_bins(logits, l_norm.shape[1:3], temp)
        else:
            ab = self.generator(l_norm, train=train)
        if self.is_initializing():
            # Touch the discriminator so model.init creates both parameter subtrees.
            self.discriminate(l_norm, ab, train=train)
        return ab, logits

    def discriminate(self, l_norm: jax.Array, ab_norm: jax.Array, train: bool = False) -> jax.Array:
        """PatchGAN logits (N, h, w, 1) for the pair (L, ab); h = patchgan_output_size(H)."""
        del train  # the discriminator has no dropout; kept for a uniform call signature
        check_l_input(
            l_norm, 2**self.n_layers_d, "DeepColorization discriminator", self._disc_min_size()
        )
        check_ab_input(ab_norm, tuple(l_norm.shape), "DeepColorization discriminator")
        pair = jnp.concatenate([l_norm.astype(jnp.float32), ab_norm.astype(jnp.float32)], axis=-1)
        return self.discriminator(pair)


# ----------------------------------------------------------------------------- registered variants

register_model(
    "deepcolorization-small",
    "deepcolorization",
    DeepColorization,
    "pix2pix GAN, U-Net ngf=16 with 5 downsamplings (stride 32) + PatchGAN ndf=16",
    ngf=16,
    ndf=16,
    num_downs=5,
)
register_model(
    "deepcolorization-colornet",
    "deepcolorization",
    DeepColorization,
    "GAN with a ColorNet generator (colornet-small-cls4) + PatchGAN ndf=32; NoGAN recipe",
    generator_arch="colornet",
    colornet=tuple({"head_stride": 4, **SMALL_WIDTHS}.items()),
    ndf=32,
)
register_model(
    "deepcolorization-colornet-film",
    "deepcolorization",
    DeepColorization,
    "GAN with a colornet-small-cls4-film generator (FiLM fusion) + PatchGAN ndf=32; NoGAN recipe",
    generator_arch="colornet",
    colornet=tuple(
        {
            "head_stride": 4,
            "fusion": "film",
            "global_activation": "gelu",
            "scene_head": True,
            **SMALL_WIDTHS,
        }.items()
    ),
    ndf=32,
)
register_model(
    "deepcolorization-lite2",
    "deepcolorization",
    DeepColorization,
    "GAN with a colornet-lite2-cls4 generator (U-Net on ImageNet EfficientNet-Lite2) + PatchGAN "
    "ndf=32; NoGAN recipe",
    generator_arch="colornet-lite",
    colornet=(("encoder_variant", "lite2"),),
    ndf=32,
)
register_model(
    "deepcolorization-unet256",
    "deepcolorization",
    DeepColorization,
    "pix2pix reference: U-Net ngf=64 with 8 downsamplings (stride 256) + 70x70 PatchGAN",
    ngf=64,
    ndf=64,
    num_downs=8,
)
