"""PyTorch reference networks of Zhang et al. ECCV16 and SIGGRAPH17 (published architecture).

Written from the architecture of richzhang/colorization (colorizers/eccv16.py, siggraph17.py):
the same layers in the same ``nn.Sequential`` slots, so ``state_dict()`` has exactly the keys
and shapes of the official ``.pth`` files. Not part of the package: tests save these with
random weights and check that colorjax's converted Flax models compute the same outputs.
Inputs and outputs are in the reference units: L in [0, 100] (N,1,H,W), ab in CIE units.
"""

from __future__ import annotations

import torch
from torch import nn

L_CENT, L_NORM, AB_NORM = 50.0, 100.0, 110.0


def conv_relu_stack(
    channels: list[int],
    *,
    last_stride: int = 1,
    dilation: int = 1,
    leading_relu: bool = False,
    norm: bool = True,
) -> list[nn.Module]:
    """[ReLU,] (Conv3x3, ReLU) per width step, [BatchNorm]: the reference block layout."""
    layers: list[nn.Module] = [nn.ReLU(True)] if leading_relu else []
    steps = list(zip(channels[:-1], channels[1:], strict=True))
    for i, (c_in, c_out) in enumerate(steps):
        stride = last_stride if i == len(steps) - 1 else 1
        layers += [
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
            nn.ReLU(True),
        ]
    if norm:
        layers.append(nn.BatchNorm2d(channels[-1]))
    return layers


class ECCV16Reference(nn.Module):
    """Zhang et al. 2016: L (N,1,H,W) in [0, 100] -> ab (N,2,H,W) in CIE units."""

    head_kind = "regression"  # for the benchmark harness: the output is ab

    def __init__(self) -> None:
        super().__init__()
        seq = nn.Sequential
        self.model1 = seq(*conv_relu_stack([1, 64, 64], last_stride=2))
        self.model2 = seq(*conv_relu_stack([64, 128, 128], last_stride=2))
        self.model3 = seq(*conv_relu_stack([128, 256, 256, 256], last_stride=2))
        self.model4 = seq(*conv_relu_stack([256, 512, 512, 512]))
        self.model5 = seq(*conv_relu_stack([512, 512, 512, 512], dilation=2))
        self.model6 = seq(*conv_relu_stack([512, 512, 512, 512], dilation=2))
        self.model7 = seq(*conv_relu_stack([512, 512, 512, 512]))
        self.model8 = seq(
            nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1),
            nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(256, 313, 1),
        )
        self.softmax = nn.Softmax(dim=1)
        self.model_out = nn.Conv2d(313, 2, 1, bias=False)
        self.upsample4 = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)

    def forward(self, input_l: torch.Tensor) -> torch.Tensor:
        """Predict ab in CIE units (the reference forward)."""
        x = (input_l - L_CENT) / L_NORM
        for block in (self.model1, self.model2, self.model3, self.model4):
            x = block(x)
        for block in (self.model5, self.model6, self.model7, self.model8):
            x = block(x)
        return self.upsample4(self.model_out(self.softmax(x))) * AB_NORM


class SIGGRAPH17Reference(nn.Module):
    """Zhang et al. 2017: (L, ab hints, mask) -> ab (N,2,H,W) in CIE units; H, W multiples of 8."""

    head_kind = "regression"
    flax_unported = ("model_class.",)  # the unused 529-class head is not in the Flax port

    def __init__(self, classes: int = 529) -> None:
        super().__init__()
        seq = nn.Sequential
        self.model1 = seq(*conv_relu_stack([4, 64, 64]))
        self.model2 = seq(*conv_relu_stack([64, 128, 128]))
        self.model3 = seq(*conv_relu_stack([128, 256, 256, 256]))
        self.model4 = seq(*conv_relu_stack([256, 512, 512, 512]))
        self.model5 = seq(*conv_relu_stack([512, 512, 512, 512], dilation=2))
        self.model6 = seq(*conv_relu_stack([512, 512, 512, 512], dilation=2))
        self.model7 = seq(*conv_relu_stack([512, 512, 512, 512]))
        self.model8up = seq(nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1))
        self.model8 = seq(*conv_relu_stack([256, 256, 256], leading_relu=True))
        self.model9up = seq(nn.ConvTranspose2d(256, 128, 4, stride=2, padding=1))
        self.model9 = seq(*conv_relu_stack([128, 128], leading_relu=True))
        self.model10up = seq(nn.ConvTranspose2d(128, 128, 4, stride=2, padding=1))
        self.model10 = seq(nn.ReLU(True), nn.Conv2d(128, 128, 3, padding=1), nn.LeakyReLU(0.2))
        self.model3short8 = seq(nn.Conv2d(256, 256, 3, padding=1))
        self.model2short9 = seq(nn.Conv2d(128, 128, 3, padding=1))
        self.model1short10 = seq(nn.Conv2d(64, 128, 3, padding=1))
        # The reference keeps an (unused at inference) 529-class head; it is in the state dict.
        self.model_class = seq(nn.Conv2d(256, classes, 1))
        self.model_out = seq(nn.Conv2d(128, 2, 1), nn.Tanh())

    def forward(
        self,
        input_a: torch.Tensor,
        input_b: torch.Tensor | None = None,
        mask_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict ab in CIE units from L, hint ab (CIE units) and hint mask (0/1)."""
        if input_b is None:
            input_b = torch.cat((input_a * 0, input_a * 0), dim=1)
        if mask_b is None:
            mask_b = input_a * 0
        x = torch.cat(((input_a - L_CENT) / L_NORM, input_b / AB_NORM, mask_b), dim=1)
        conv1 = self.model1(x)
        conv2 = self.model2(conv1[:, :, ::2, ::2])
        conv3 = self.model3(conv2[:, :, ::2, ::2])
        x = self.model4(conv3[:, :, ::2, ::2])
        x = self.model7(self.model6(self.model5(x)))
        x = self.model8(self.model8up(x) + self.model3short8(conv3))
        x = self.model9(self.model9up(x) + self.model2short9(conv2))
        x = self.model10(self.model10up(x) + self.model1short10(conv1))
        return self.model_out(x) * AB_NORM


def randomise_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine terms (eval mode)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                n = layer.num_features
                layer.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                layer.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                layer.weight.copy_(1 + 0.1 * torch.randn(n, generator=gen))
                layer.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return module.eval()
