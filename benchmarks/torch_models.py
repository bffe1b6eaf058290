"""PyTorch mirrors of the colorjax networks (same layers, widths, norms, parameter counts).

Not part of the package: used only by the benchmark harness to compare against PyTorch. Each
class mirrors the Flax module in colorjax/models line by line; tensors are NCHW here (NHWC in
Flax), and on CUDA the harness moves models and inputs to channels_last memory format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Flax defaults that differ from PyTorch's: GroupNorm/InstanceNorm epsilon.
FLAX_NORM_EPS = 1e-6


def num_groups(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """Same GroupNorm group count rule as colorjax.models.layers.num_groups."""
    groups = max(1, min(max_groups, channels // min_group_size))
    while channels % groups:
        groups -= 1
    return groups


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(lo, hi) padding of XLA/Flax 'SAME' for one spatial dim (asymmetric for even sizes)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvNormAct(nn.Module):
    """Conv (Flax 'SAME' padding) -> GroupNorm -> ReLU, as colorjax.models.layers.ConvNormAct."""

    def __init__(self, in_ch: int, features: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(in_ch, features, kernel, stride=stride, padding=0)
        self.norm = nn.GroupNorm(num_groups(features), features, eps=FLAX_NORM_EPS)

    def forward(
        self, x: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Apply conv -> GroupNorm -> (x * (1 + scale) + shift) -> ReLU."""
        h_lo, h_hi = same_padding(x.shape[-2], self.kernel, self.stride)
        w_lo, w_hi = same_padding(x.shape[-1], self.kernel, self.stride)
        if h_lo or h_hi or w_lo or w_hi:
            x = F.pad(x, (w_lo, w_hi, h_lo, h_hi))
        x = self.norm(self.conv(x))
        if film is not None:
            scale, shift = film
            x = x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return F.relu(x)


class ColorNet(nn.Module):
    """Global/local fusion colorizer, mirror of colorjax.models.colornet.ColorNet."""

    def __init__(
        self,
        head: str = "regression",
        low_features: Sequence[int] = (64, 128, 256, 512),
        mid_features: Sequence[int] = (512, 256),
        global_features: Sequence[int] = (512, 512, 512, 512),
        global_dense: Sequence[int] = (1024, 512, 256),
        fusion_features: int = 256,
        decoder_features: Sequence[int] = (128, 64, 32),
        upsample: str = "nearest",
        num_classes: int | None = None,
        head_stride: int = 1,
        fusion: str = "concat",
        global_activation: str = "relu",
        scene_head: bool = False,
    ) -> None:
        super().__init__()
        self.head_kind, self.upsample, self.head_stride = head, upsample, head_stride
        self.film_fusion = fusion == "film"
        low = list(low_features)
        layers, ch = [], 1
        for i in range(3):
            layers += [ConvNormAct(ch, low[i], stride=2), ConvNormAct(low[i], low[i + 1])]
            ch = low[i + 1]
        self.low = nn.Sequential(*layers)
        mids, m_ch = [], ch
        for feats in mid_features:
            mids.append(ConvNormAct(m_ch, feats))
            m_ch = feats
        self.mid = nn.Sequential(*mids)
        globs, g_ch = [], ch
        for i, feats in enumerate(global_features):
            globs.append(ConvNormAct(g_ch, feats, stride=2 if i % 2 == 0 else 1))
            g_ch = feats
        self.global_convs = nn.Sequential(*globs)
        dense = []
        for feats in global_dense:
            # flax.linen.gelu is the tanh approximation by default.
            act = nn.GELU(approximate="tanh") if global_activation == "gelu" else nn.ReLU()
            dense += [nn.Linear(g_ch, feats), act]
            g_ch = feats
        self.global_dense = nn.Sequential(*dense)
        # Training-only palette head: counted in the parameters, unused by forward.
        self.scene_head = nn.Linear(g_ch, int(num_classes)) if scene_head else None
        if self.film_fusion:
            self.fusion_film = nn.Linear(g_ch, 2 * fusion_features)
            self.fusion = ConvNormAct(m_ch, fusion_features, kernel=1)
        else:
            self.fusion = ConvNormAct(m_ch + g_ch, fusion_features, kernel=1)
        dec, d_ch = [], fusion_features
        for feats in decoder_features:
            dec.append(nn.ModuleList([ConvNormAct(d_ch, feats), ConvNormAct(feats, feats)]))
            d_ch = feats
        self.decoder = nn.ModuleList(dec)
        out = 2 if head == "regression" else int(num_classes)
        self.head = nn.Conv2d(d_ch, out, 1)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        """L (N,1,H,W) -> tanh ab (N,2,H,W) or logits (N,Q,H,W)."""
        x = self.low(l_norm)
        mid = self.mid(x)
        g = self.global_convs(x).float().mean(dim=(2, 3)).to(x.dtype)
        g = self.global_dense(g)
        if self.film_fusion:
            x = self.fusion(mid, self.fusion_film(g).chunk(2, dim=1))
        else:
            tiled = g[:, :, None, None].expand(-1, -1, mid.shape[2], mid.shape[3])
            x = self.fusion(torch.cat([mid, tiled], dim=1))
        stride = 8
        for first, second in self.decoder:
            x = first(x)
            if stride > self.head_stride:  # quarter-resolution heads stop upsampling at H/4
                stride //= 2
                if self.upsample == "nearest":
                    x = F.interpolate(x, scale_factor=2, mode="nearest")
                else:
                    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = second(x)
        out = self.head(x).float()
        return torch.tanh(out) if self.head_kind == "regression" else out


class UNetGenerator(nn.Module):
    """pix2pix U-Net, mirror of colorjax.models.deepcolorization.UNetGenerator."""

    def __init__(
        self, ngf: int = 64, num_downs: int = 8, dropout_rate: float = 0.5, num_dropout: int = 3
    ) -> None:
        super().__init__()
        self.num_downs, self.num_dropout = num_downs, num_dropout
        widths = [ngf * min(2**i, 8) for i in range(num_downs)]
        self.down = nn.ModuleList()
        self.down_norm = nn.ModuleList()
        ch = 1
        for i, feats in enumerate(widths):
            self.down.append(nn.Conv2d(ch, feats, 4, 2, 1))
            inner = 0 < i < num_downs - 1
            self.down_norm.append(
                nn.InstanceNorm2d(feats, eps=FLAX_NORM_EPS) if inner else nn.Identity()
            )
            ch = feats
        self.up = nn.ModuleList()
        for i in reversed(range(num_downs)):
            in_ch = widths[i] if i == num_downs - 1 else 2 * widths[i]
            out_ch = 2 if i == 0 else widths[i - 1]
            self.up.append(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1))
        self.up_norm = nn.ModuleList(
            nn.InstanceNorm2d(widths[i - 1], eps=FLAX_NORM_EPS)
            for i in reversed(range(1, num_downs))
        )
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        """L (N,1,H,W) -> tanh ab (N,2,H,W)."""
        x, skips = l_norm, []
        for i, (conv, norm) in enumerate(zip(self.down, self.down_norm, strict=True)):
            if i > 0:
                x = F.leaky_relu(x, 0.2)
            x = norm(conv(x))
            skips.append(x)
        x = skips.pop()
        for step, conv in enumerate(self.up):
            x = conv(F.relu(x))
            if step == self.num_downs - 1:
                return torch.tanh(x.float())
            x = self.up_norm[step](x)
            if step < self.num_dropout:
                x = self.dropout(x)
            x = torch.cat([skips.pop(), x], dim=1)
        raise AssertionError("unreachable")


class PatchDiscriminator(nn.Module):
    """PatchGAN on (L, ab), mirror of colorjax.models.deepcolorization.PatchDiscriminator."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = ndf
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            feats = ndf * min(2**n, 8)
            layers.append(nn.Conv2d(ch, feats, 4, stride, 1))
            if norm == "instance":
                layers.append(nn.InstanceNorm2d(feats, eps=FLAX_NORM_EPS))
            layers.append(nn.LeakyReLU(0.2))
            ch = feats
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
        """Patch logits (N,1,h,w) for the pair (L, ab)."""
        return self.net(torch.cat([l_norm, ab_norm], dim=1)).float()


# ----------------------------------------------------------------------------- EfficientNet-Lite

# colorjax.color's Lab -> sRGB constants (D65 white, skimage's matrices and knees).
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_LAB_INV_KNEE, _LAB_KAPPA, _LAB_OFFSET = 0.2068966, 7.787, 16.0 / 116.0
_LAB_CLAMP = 1.0e4
# Inverted in float64, then rounded to float32, as colorjax.color does; kept as Python floats
# (exact float32 values) so no device tensor is built per call.
_RGB_FROM_XYZ = torch.linalg.inv(torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)).float().tolist()


def gray_encoder_input(l_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L (N,1,H,W) -> the gray sRGB photo (Lab (L, 0, 0)), 3 channels in [-1, 1].

    colorjax.models.backbones.gray_encoder_input via colorjax.color.lab_inputs_to_rgb with
    a = b = 0, step by step in float32 (same constants, same order of operations).
    """
    lightness = ((l_norm.float() + 1.0) * 50.0).clamp(-_LAB_CLAMP, _LAB_CLAMP)
    fy = (lightness + 16.0) / 116.0
    # a = b = 0: fx = fy, and fz = max(fy, 0) (colorjax clips negative Z the same way).
    f = torch.cat([fy, fy, fy.clamp_min(0.0)], dim=1)
    t = torch.where(f > _LAB_INV_KNEE, f * f * f, (f - _LAB_OFFSET) / _LAB_KAPPA)
    x, y, z = (c * w for c, w in zip(t.unbind(1), _WHITE_D65, strict=True))
    m = _RGB_FROM_XYZ
    linear = torch.stack([m[i][0] * x + m[i][1] * y + m[i][2] * z for i in range(3)], dim=1)
    high = linear > 0.0031308
    srgb = torch.where(
        high, 1.055 * torch.where(high, linear, 1.0) ** (1.0 / 2.4) - 0.055, linear * 12.92
    )
    return srgb.clamp(0.0, 1.0) * 2.0 - 1.0


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with TF/XLA 'SAME' padding (the extra pixel of an odd total goes after)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad as 'SAME' does, then convolve."""
        k, s = self.kernel_size[0], self.stride[0]
        h_lo, h_hi = same_padding(x.shape[-2], k, s)
        w_lo, w_hi = same_padding(x.shape[-1], k, s)
        if h_lo == h_hi and w_lo == w_hi:  # symmetric: the conv pads itself, no padded copy
            return F.conv2d(x, self.weight, self.bias, self.stride, (h_lo, w_lo), 1, self.groups)
        x = F.pad(x, (w_lo, w_hi, h_lo, h_hi))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class FrozenBatchNorm(nn.Module):
    """Inference BatchNorm as x * scale + shift per channel, as colorjax's FrozenBatchNorm.

    scale and shift are parameters (as in Flax, where they are params), so parameter counts
    match; a frozen encoder turns their requires_grad off.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(features))
        self.shift = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x * scale + shift."""
        return x * self.scale[:, None, None] + self.shift[:, None, None]


class ConvBN(nn.Module):
    """Bias-free 'SAME' conv, frozen BatchNorm, ReLU6 (clip to [0, 6]): Flax's `_conv_bn`."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int, act: bool = True
    ) -> None:
        super().__init__()
        self.act = act
        self.conv = SameConv2d(in_ch, out_ch, kernel, stride, groups)
        self.bn = FrozenBatchNorm(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv -> scale/shift -> ReLU6."""
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, 1x1 projection, identity skip."""

    def __init__(self, kernel: int, stride: int, expand: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.expand = ConvBN(in_ch, hidden, 1, 1, 1) if expand != 1 else None
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, hidden)
        self.project = ConvBN(hidden, out_ch, 1, 1, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        x = inputs if self.expand is None else self.expand(inputs)
        x = self.project(self.depthwise(x))
        return x + inputs if self.residual else x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite encoder, mirror of colorjax.models.backbones.EfficientNetLite.

    RGB in [-1, 1] (N,3,H,W) -> (features at strides 2, 4, 8, 16, 32, pooled 1280-wide
    embedding); ``num_classes`` > 0 adds the ImageNet classifier (its logits are not returned:
    colorjax's LiteColorNet drops it, and the mirror exists for the colorizers).
    """

    def __init__(self, variant: str = "lite2", num_classes: int = 0) -> None:
        super().__init__()
        # The block table is colorjax's own (pure Python), so the two cannot drift apart.
        from colorjax.models.backbones.efficientnet_lite import (
            HEAD_FEATURES,
            STEM_FEATURES,
            lite_block_args,
        )

        blocks = lite_block_args(variant)
        self.stem = ConvBN(3, STEM_FEATURES, 3, 2, 1)
        self.blocks = nn.ModuleList(MBConv(*args) for args in blocks)
        # The map before each stride-2 block is the last one at its resolution.
        self.tap_before = [i for i, (_, stride, *_) in enumerate(blocks) if stride > 1]
        self.feature_channels = (*(blocks[i][3] for i in self.tap_before), blocks[-1][4])
        self.head = ConvBN(blocks[-1][4], HEAD_FEATURES, 1, 1, 1)
        self.fc = nn.Linear(HEAD_FEATURES, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(feature maps at strides 2..32, embedding (N, 1280) in float32)."""
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            if i in self.tap_before:
                features.append(x)
            x = block(x)
        features.append(x)
        embedding = self.head(x).float().mean(dim=(2, 3))
        return tuple(features), embedding


class LiteColorNet(nn.Module):
    """EfficientNet-Lite encoder + U-Net decoder, mirror of colorjax's LiteColorNet.

    L (N,1,H,W) -> ab-bin logits (N,Q,H/4,W/4) or tanh ab (N,2,H/4,W/4). ``freeze_encoder``
    turns the encoder's requires_grad off: Flax stops gradients at its outputs, so neither
    trains it, and autograd here then neither records nor differentiates it.
    """

    def __init__(
        self,
        encoder_variant: str = "lite2",
        freeze_encoder: bool = True,
        global_features: int = 256,
        decoder_features: Sequence[int] = (256, 128, 96),
        head: str = "classification",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.head_kind, self.freeze_encoder = head, freeze_encoder
        self.encoder = EfficientNetLite(encoder_variant, num_classes=0)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        _, c4, c8, c16, c32 = self.encoder.feature_channels
        self.scene = nn.Linear(1280, global_features)
        self.fusion = ConvNormAct(c32 + global_features, decoder_features[0])
        dec, ch = [], decoder_features[0]
        for skip, feats in zip((c16, c8, c4), decoder_features, strict=True):
            dec.append(nn.ModuleList([ConvNormAct(ch + skip, feats), ConvNormAct(feats, feats)]))
            ch = feats
        self.decoder = nn.ModuleList(dec)
        if head == "regression":
            out = 2
        elif num_classes is not None:
            out = int(num_classes)
        else:
            from colorjax.gamut import ab_bin_centers

            out = len(ab_bin_centers())
        self.head = nn.Conv2d(ch, out, 1)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        """L (N,1,H,W) -> logits (N,Q,H/4,W/4) or tanh ab (N,2,H/4,W/4), float32."""
        features, embedding = self.encoder(gray_encoder_input(l_norm))
        _, s4, s8, s16, s32 = features
        if self.freeze_encoder:  # Flax's stop_gradient on the encoder outputs
            s4, s8, s16, s32, embedding = (t.detach() for t in (s4, s8, s16, s32, embedding))
        g = F.relu(self.scene(embedding))
        tiled = g[:, :, None, None].expand(-1, -1, s32.shape[2], s32.shape[3]).to(s32.dtype)
        x = self.fusion(torch.cat([s32, tiled], dim=1))
        for (first, second), skip in zip(self.decoder, (s16, s8, s4), strict=True):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = second(first(torch.cat([x, skip.to(x.dtype)], dim=1)))
        out = self.head(x).float()
        return torch.tanh(out) if self.head_kind == "regression" else out


class DeepColorization(nn.Module):
    """pix2pix pair: .generator and .discriminator, like the Flax module's two subtrees."""

    def __init__(
        self,
        ngf: int = 64,
        ndf: int = 64,
        num_downs: int = 8,
        n_layers_d: int = 3,
        dropout_rate: float = 0.5,
        num_dropout: int = 3,
        disc_norm: str = "instance",
        generator_arch: str = "unet",
        colornet: tuple = (),
        temperature: float = 0.38,
    ) -> None:
        super().__init__()
        self.bin_generator = generator_arch in ("colornet", "colornet-lite")
        self.temperature, self.ab_scale = temperature, 1.0
        if self.bin_generator:
            from colorjax.color import AB_SCALE
            from colorjax.gamut import ab_bin_centers

            centers = torch.as_tensor(_np(ab_bin_centers()))
            kwargs = {**dict(colornet), "head": "classification"}
            cls = LiteColorNet if generator_arch == "colornet-lite" else ColorNet
            self.generator = cls(**kwargs, num_classes=len(centers))
            # A buffer, not a parameter: it moves with .to(device) and is not counted.
            self.register_buffer("centers", centers, persistent=False)
            self.ab_scale = AB_SCALE
        else:
            self.generator = UNetGenerator(ngf, num_downs, dropout_rate, num_dropout)
        self.discriminator = PatchDiscriminator(ndf, n_layers_d, disc_norm)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        """Generator output (U-Net: ab like DeepColorization.__call__; ColorNet(-Lite): logits)."""
        return self.generator(l_norm)

    def generate(
        self, l_norm: torch.Tensor, temperature: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(normalised ab (N,2,H,W), bin logits or None), as the Flax module's `generate`."""
        out = self.generator(l_norm)
        if not self.bin_generator:
            return out, None
        return self.decode(out, tuple(l_norm.shape[-2:]), temperature), out

    def decode(
        self, logits: torch.Tensor, size: tuple[int, int], temperature: float | None = None
    ) -> torch.Tensor:
        """Bin logits (N,Q,h,w) -> annealed-mean ab bilinearly upsampled to `size` (N,2,*size).

        The ab a bin generator hands the discriminator (Flax: annealed_mean, then resize_to).
        """
        temp = self.temperature if temperature is None else temperature
        z = logits.float()
        # The max is a constant shift (stop_gradient in Flax): softmax is invariant to it.
        z = (z - z.amax(dim=1, keepdim=True).detach()) / temp
        probs = torch.softmax(z, dim=1)
        ab = torch.einsum("nqhw,qd->ndhw", probs, self.centers) / self.ab_scale
        if tuple(ab.shape[-2:]) == tuple(size):
            return ab
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)


def _torch_zhang() -> Any:
    """benchmarks/torch_zhang.py (Zhang et al. reference networks), imported by file path."""
    import importlib.util
    import sys
    from pathlib import Path

    if "torch_zhang" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "torch_zhang", Path(__file__).with_name("torch_zhang.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["torch_zhang"] = module
        spec.loader.exec_module(module)
    return sys.modules["torch_zhang"]


DDCOLOR_PACKAGE = "modelscope/models/cv/image_colorization/ddcolor"


def official_ddcolor() -> Any:
    """The official DDColor module from the installed modelscope wheel, loaded by file path.

    Only its files are executed (as a package of their own), never ``import modelscope``;
    timm's two helpers stand in where timm is absent (it needs torchvision), as in
    the tests use it too. Needs ``pip install 'colorjax[reference]'``.
    """
    import importlib.metadata
    import importlib.util
    import sys
    import types

    name = "ddcolor_official"
    if f"{name}.ddcolor" in sys.modules:
        return sys.modules[f"{name}.ddcolor"]
    root = importlib.metadata.distribution("modelscope").locate_file(DDCOLOR_PACKAGE)
    try:
        import timm.models.layers  # noqa: F401 - the real one, where it imports
    except Exception:  # noqa: BLE001 - absent, or present without torchvision
        layers = types.ModuleType("timm.models.layers")
        layers.DropPath = lambda p: nn.Identity()
        layers.trunc_normal_ = nn.init.trunc_normal_
        sys.modules.setdefault("timm", types.ModuleType("timm"))
        sys.modules.setdefault("timm.models", types.ModuleType("timm.models"))
        sys.modules["timm.models.layers"] = layers
    package = types.ModuleType(name)
    package.__path__ = [str(root)]
    sys.modules[name] = package
    utils = types.ModuleType(f"{name}.utils")
    utils.__path__ = [str(root / "utils")]
    sys.modules[f"{name}.utils"] = utils
    for sub in (
        "utils.convnext",
        "utils.position_encoding",
        "utils.transformer_utils",
        "utils.unet",
        "ddcolor",
    ):
        spec = importlib.util.spec_from_file_location(
            f"{name}.{sub}", root / f"{sub.replace('.', '/')}.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules[f"{name}.ddcolor"]


def gray_rgb(l_norm: torch.Tensor) -> torch.Tensor:
    """Gray sRGB in [0, 1] of CIE Lab (L, 0, 0), L = 50 (l_norm + 1): colorjax's gray_rgb."""
    fy = ((l_norm + 1.0) * 50.0 + 16.0) / 116.0
    y = torch.where(fy > 6.0 / 29.0, fy**3, 3.0 * (6.0 / 29.0) ** 2 * (fy - 4.0 / 29.0))
    y = y.clamp(0.0, 1.0)
    srgb = torch.where(y <= 0.0031308, 12.92 * y, 1.055 * y.clamp_min(1e-12) ** (1 / 2.4) - 0.055)
    return srgb.clamp(0.0, 1.0).expand(-1, 3, -1, -1)


class DDColorReference(nn.Module):
    """The official DDColor network behind colorjax's input: l_norm (N, 1, H, W) -> ab."""

    # The ConvNeXt classifier's final norm and head: DDColor never uses them, the port omits them.
    flax_unported = ("net.encoder.arch.norm.", "net.encoder.arch.head_cls.")

    def __init__(self, encoder: str = "large") -> None:
        super().__init__()
        official = official_ddcolor()
        name = {"tiny": "convnext-t", "large": "convnext-l"}[encoder]
        # input_size only sizes a dummy forward that sets up the hooks; any size runs after.
        self.net = official.DDColor(encoder_name=name, input_size=(64, 64), num_queries=100)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        """The official forward (ImageNet-normalised gray RGB in, ab out)."""
        return self.net(gray_rgb(l_norm))


# Families with a PyTorch mirror here (every registered family, so `bench --torch` times all).
MIRRORED_FAMILIES = (
    "colornet",
    "colornet-lite",
    "deepcolorization",
    "zhang-eccv16",
    "zhang-siggraph17",
    "ddcolor",
)


def create_torch_model(name: str) -> nn.Module:
    """The PyTorch mirror of the registered colorjax model `name` (same spec kwargs)."""
    from colorjax.models import get_spec

    spec = get_spec(name)
    kwargs: dict[str, Any] = {k: v for k, v in spec.kwargs.items() if k != "dtype"}
    if spec.family == "colornet":
        if (
            kwargs.get("head", "regression") == "classification"
            and kwargs.get("num_classes") is None
        ):
            from colorjax.gamut import ab_bin_centers

            kwargs["num_classes"] = len(ab_bin_centers())
        return ColorNet(**kwargs)
    if spec.family == "colornet-lite":
        return LiteColorNet(**kwargs)
    if spec.family == "deepcolorization":
        return DeepColorization(**kwargs)
    if spec.family in ("zhang-eccv16", "zhang-siggraph17"):
        torch_zhang = _torch_zhang()
        if spec.family == "zhang-eccv16":
            return torch_zhang.ECCV16Reference()
        return torch_zhang.SIGGRAPH17Reference()
    if spec.family == "ddcolor":
        return DDColorReference(kwargs.get("encoder", "large"))
    raise ValueError(f"no PyTorch mirror for family {spec.family!r} (model {name!r})")


def count_params(module: nn.Module) -> int:
    """Number of trainable scalars (less layers the Flax port leaves out, e.g. unused heads)."""
    skip = tuple(getattr(module, "flax_unported", ()))
    return sum(p.numel() for n, p in module.named_parameters() if not n.startswith(skip))


def _conv_weight(kernel: Any) -> torch.Tensor:
    """Flax Conv kernel (kh, kw, in, out) -> torch Conv2d weight (out, in, kh, kw)."""
    return torch.as_tensor(_np(kernel)).permute(3, 2, 0, 1).contiguous()


def _np(x: Any) -> Any:
    """Host numpy copy of a jax/numpy array."""
    import numpy as np

    return np.array(x, dtype=np.float32)


def _set(module: nn.Module, params: dict[str, Any], transpose: bool = False) -> None:
    """Copy one Flax conv/dense/convtranspose {'kernel'[, 'bias']} into a torch layer."""
    kernel = params["kernel"]
    if isinstance(module, nn.Linear):
        weight = torch.as_tensor(_np(kernel)).T.contiguous()
    elif transpose:
        # Flax ConvTranspose (transpose_kernel=False) is a plain conv over the dilated input;
        # torch's is the gradient of a conv, i.e. the same with a spatially flipped kernel.
        weight = torch.as_tensor(_np(kernel)[::-1, ::-1].copy()).permute(2, 3, 0, 1).contiguous()
    else:
        weight = _conv_weight(kernel)
    with torch.no_grad():
        module.weight.copy_(weight)
        if module.bias is not None:  # the encoder's convs are bias-free (BatchNorm follows)
            module.bias.copy_(torch.as_tensor(_np(params["bias"])))


def _set_cna(module: ConvNormAct, params: dict[str, Any]) -> None:
    """Copy a Flax ConvNormAct (conv + GroupNorm scale/bias)."""
    _set(module.conv, params["conv"])
    with torch.no_grad():
        module.norm.weight.copy_(torch.as_tensor(_np(params["norm"]["scale"])))
        module.norm.bias.copy_(torch.as_tensor(_np(params["norm"]["bias"])))


def _set_conv_bn(module: ConvBN, params: dict[str, Any], conv: str, bn: str) -> None:
    """Copy a Flax `_conv_bn` (bias-free conv `conv`, FrozenBatchNorm `bn`) into a ConvBN."""
    _set(module.conv, params[conv])
    with torch.no_grad():
        module.bn.scale.copy_(torch.as_tensor(_np(params[bn]["scale"])))
        module.bn.shift.copy_(torch.as_tensor(_np(params[bn]["shift"])))


def _load_lite_encoder(module: EfficientNetLite, params: dict[str, Any]) -> None:
    """Copy Flax EfficientNetLite params (names of the PyTorch state dict) into the mirror."""
    _set_conv_bn(module.stem, params, "conv_stem", "bn0")
    for i, block in enumerate(module.blocks):
        p = params[f"blocks_{i}"]
        if block.expand is not None:
            _set_conv_bn(block.expand, p, "expand_conv", "bn0")
        _set_conv_bn(block.depthwise, p, "depthwise_conv", "bn1")
        _set_conv_bn(block.project, p, "project_conv", "bn2")
    _set_conv_bn(module.head, params, "conv_head", "bn1")
    if module.fc is not None:
        _set(module.fc, params["fc"])


def _load_decoder_and_head(module: nn.Module, params: dict[str, Any]) -> nn.Module:
    """Copy the decoder's ConvNormAct pairs and the 1x1 head (ColorNet and LiteColorNet alike)."""
    for i, (first, second) in enumerate(module.decoder):
        _set_cna(first, params[f"decoder_{i}_a"])
        _set_cna(second, params[f"decoder_{i}_b"])
    _set(module.head, params["head"])
    return module


def load_flax_params(module: nn.Module, params: dict[str, Any]) -> nn.Module:
    """Copy Flax `variables['params']` into the mirror (to check both compute the same thing)."""
    if isinstance(module, ColorNet):
        for i, layer in enumerate(module.low):
            _set_cna(layer, params[f"low_{i}"])
        for i, layer in enumerate(module.mid):
            _set_cna(layer, params[f"mid_{i}"])
        for i, layer in enumerate(module.global_convs):
            _set_cna(layer, params[f"global_conv_{i}"])
        for i, layer in enumerate(m for m in module.global_dense if isinstance(m, nn.Linear)):
            _set(layer, params[f"global_dense_{i}"])
        _set_cna(module.fusion, params["fusion"])
        if module.film_fusion:
            _set(module.fusion_film, params["fusion_film"])
        if module.scene_head is not None:
            _set(module.scene_head, params["scene_head"])
        return _load_decoder_and_head(module, params)
    if isinstance(module, LiteColorNet):
        _load_lite_encoder(module.encoder, params["encoder"])
        _set(module.scene, params["scene"])
        _set_cna(module.fusion, params["fusion"])
        return _load_decoder_and_head(module, params)
    if isinstance(module, DeepColorization):
        gen, disc = params["generator"], params["discriminator"]
        if isinstance(module.generator, (ColorNet, LiteColorNet)):
            load_flax_params(module.generator, gen)
        else:
            n = module.generator.num_downs
            for i, conv in enumerate(module.generator.down):
                _set(conv, gen[f"down_{i}"])
            for step, conv in enumerate(module.generator.up):
                _set(conv, gen[f"up_{n - 1 - step}"], transpose=True)
        convs = [m for m in module.discriminator.net if isinstance(m, nn.Conv2d)]
        for i, conv in enumerate(convs):
            _set(conv, disc[f"conv_{i}"])
        return module
    raise TypeError(f"cannot load Flax params into {type(module).__name__}")
