"""Colorization networks (ColorNet, DeepColorization, Zhang, DDColor) and the variant registry.

Importing the family modules registers their variants (each registers its own, at its bottom).
"""

from colorjax.models.registry import (  # noqa: I001 - the mechanism first, then the families
    ModelContract,
    ModelSpec,
    build_model,
    get_spec,
    list_models,
    model_contract,
    model_task,
    register,
    register_model,
)
from colorjax.models.colornet import ColorNet
from colorjax.models.colornet_lite import LiteColorNet
from colorjax.models.cost import count_params, forward_flops, param_breakdown
from colorjax.models.deepcolorization import (
    DeepColorization,
    PatchDiscriminator,
    UNetGenerator,
    patchgan_output_size,
    patchgan_receptive_field,
)
from colorjax.models.zhang import ZhangECCV16, ZhangSIGGRAPH17
from colorjax.models.ddcolor import DDColor  # noqa: I001 - registration order: the table's

__all__ = [
    "ColorNet",
    "DDColor",
    "DeepColorization",
    "LiteColorNet",
    "ModelContract",
    "ModelSpec",
    "PatchDiscriminator",
    "UNetGenerator",
    "count_params",
    "build_model",
    "forward_flops",
    "get_spec",
    "list_models",
    "model_contract",
    "model_task",
    "param_breakdown",
    "patchgan_output_size",
    "patchgan_receptive_field",
    "register",
    "register_model",
    "ZhangECCV16",
    "ZhangSIGGRAPH17",
]
