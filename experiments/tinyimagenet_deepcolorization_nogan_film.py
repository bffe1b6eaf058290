"""NoGAN's adversarial phase on the FiLM ColorNet: `tinyimagenet_deepcolorization_nogan.py` again.

Same recipe (fresh PatchGAN, LSGAN, plain CE x3 + L1 x10, 400 steps), generator
`colornet-small-cls4-film`, started from the third ColorNet stage
(`tinyimagenet_colornet_cls4_film.py`):

    colorjax weights export --workdir runs/cls4-film --name cls4-film --out runs/export
    colorjax train --config experiments/tinyimagenet_deepcolorization_nogan_film.py \
        --workdir runs/nogan-film --set model.init_weights=runs/export/cls4-film.safetensors
"""

from pathlib import Path

from colorjax.config import ExperimentConfig, load_config


def get_config() -> ExperimentConfig:
    """The NoGAN phase with the FiLM generator: about 1 s a step at batch 16 on 2 cores."""
    c = load_config(Path(__file__).with_name("tinyimagenet_deepcolorization_nogan.py"))
    c.model.name = "deepcolorization-colornet-film"
    return c
