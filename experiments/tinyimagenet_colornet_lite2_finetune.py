"""ColorNet-Lite2, second stage: the ImageNet encoder fine-tuned at a tenth of the decoder's lr.

The first stage (`tinyimagenet_colornet_lite2.py`) trained the decoder on the frozen encoder;
its loss flattened, and the encoder's features are what limits it: ImageNet taught them to
name objects, not to follow the edges colour must stop at. Here every parameter trains; the
encoder at ``optim.encoder_lr_scale`` times the learning rate so it adapts without forgetting.
Measured (docs/ABLATION.md): on full-size photos it did not pay. 1,000 steps raised the Tiny
ImageNet eval PSNR (23.61 -> 23.67) but on 64 BSDS500 train photos cost 0.16 dB and the green
sector (0.55 -> 0.49) for cyan and blue: the encoder adapts to blurry upsampled 64 px photos.
The bundled weights stay first-stage. Start from the first stage's exported weights:

    colorjax weights export --workdir runs/lite2 --name lite2-stage1 --out runs/export
    colorjax train --config experiments/tinyimagenet_colornet_lite2_finetune.py \
        --workdir runs/lite2-ft --cpu-devices 2 \
        --set model.init_weights=runs/export/lite2-stage1.safetensors
"""

from pathlib import Path

from colorjax.config import ExperimentConfig, load_config


def get_config() -> ExperimentConfig:
    """Short warm-up (the decoder is trained; Adam's moments are not), then cosine to 2 %."""
    c = load_config(Path(__file__).with_name("tinyimagenet_colornet_lite2.py"))
    c.model.overrides = {"freeze_encoder": False}
    c.optim.learning_rate = 3e-4
    c.optim.encoder_lr_scale = 0.1
    c.optim.warmup_steps = 100
    c.train.steps = 1500
    c.train.eval_every = 500
    return c
