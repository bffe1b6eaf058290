"""ImageNet-trained encoders shared by the colorizer families (pure Flax, BatchNorm frozen)."""

from colorjax.models.backbones.efficientnet_lite import (
    LITE_VARIANTS,
    EfficientNetLite,
    gray_encoder_input,
    imagenet_wnids,
    lite_block_args,
)

__all__ = [
    "LITE_VARIANTS",
    "EfficientNetLite",
    "gray_encoder_input",
    "imagenet_wnids",
    "lite_block_args",
]
