"""Colorization networks (ColorNet, DeepColorization) and the registry of named variants."""

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
]
