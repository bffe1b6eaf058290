"""DeepColorization on the ImageNet EfficientNet-Lite2 U-Net: DeOldify's NoGAN, adversarial phase.

The generator is ColorNet-Lite2 (a U-Net whose down path is the ImageNet encoder), pretrained
with the colour loss alone by `tinyimagenet_colornet_lite2.py` (NoGAN; its encoder frozen, so
still ImageNet's). Here a fresh PatchGAN joins for a short adversarial phase at 128 px, the
encoder still frozen, the bin cross-entropy on:

    colorjax weights export --workdir runs/lite2 --name lite2-stage1 --out runs/export
    colorjax train --config experiments/tinyimagenet_deepcolorization_lite2.py \
        --workdir runs/gan-lite2 --cpu-devices 2 \
        --set model.init_weights=runs/export/lite2-stage1.safetensors
"""

from pathlib import Path

from colorjax.config import ExperimentConfig, load_config


def get_config() -> ExperimentConfig:
    """The from-scratch ColorNet's NoGAN recipe on the Lite2 generator, at 128 px."""
    c = load_config(Path(__file__).with_name("tinyimagenet_deepcolorization_nogan.py"))
    c.model.name = "deepcolorization-lite2"
    c.data.image_size = 128
    c.train.steps = 500
    c.train.eval_every = 250
    return c
