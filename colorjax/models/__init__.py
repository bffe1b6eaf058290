"""Colorization networks (ColorNet, DeepColorization, Zhang et al.) and the registry of variants."""

from colorjax.models.colornet import ColorNet
from colorjax.models.deepcolorization import (
    DeepColorization,
    PatchDiscriminator,
    UNetGenerator,
    patchgan_output_size,
    patchgan_receptive_field,
)
from colorjax.models.registry import (
    ModelSpec,
    count_params,
    create_model,
    forward_flops,
    get_spec,
    list_models,
    model_head,
    param_breakdown,
    predict_ab,
    register,
)
from colorjax.models.zhang import ZhangECCV16, ZhangSIGGRAPH17

__all__ = [
    "ColorNet",
    "DeepColorization",
    "ModelSpec",
    "PatchDiscriminator",
    "UNetGenerator",
    "count_params",
    "create_model",
    "forward_flops",
    "get_spec",
    "list_models",
    "model_head",
    "param_breakdown",
    "patchgan_output_size",
    "patchgan_receptive_field",
    "predict_ab",
    "register",
    "ZhangECCV16",
    "ZhangSIGGRAPH17",
]
