"""Shape facts shared by the layers and their CPU forms: NHWC dimension numbers and paddings."""

from __future__ import annotations

# Dimension numbers of every convolution in colorjax.models: NHWC activations, HWIO kernels.
NHWC = ("NHWC", "HWIO", "NHWC")


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF/XLA 'SAME' padding (low, high) of one axis: the extra pixel goes to the high side."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# Paddings of the 4x4 convs (colorjax.models.conv4x4); their CPU forms are derived for these.
# Transposed conv of the U-Net decoder: with stride 2 an exact 2x output, as PyTorch's
# ConvTranspose2d(k=4, s=2, p=1).
UPCONV_PADDING = ((2, 2), (2, 2))
# Stride-2 encoder convs (U-Net down path, PatchGAN): exact 1/2 output.
DOWNCONV_PADDING = ((1, 1), (1, 1))
# The PatchGAN's stride-1 convs (pix2pix's padding=1).
PATCHCONV_PADDING = ((1, 1), (1, 1))
