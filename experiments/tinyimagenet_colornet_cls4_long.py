"""ColorNet cls4, second stage: 7,000 more steps from the first 2,000 (the bundled ColorNet).

The first bundled ColorNet stopped after 2,000 steps (1.3 epochs) and its colour was still
warm-biased: foliage and red objects came out brown, the prior's colours. This stage continues
the same model and loss for about 4.4 more epochs with a fresh warm-up and cosine, so every
layer keeps its shape and the run can start from the first stage's weights:

    colorjax train --config experiments/tinyimagenet_colornet_cls4_long.py \
        --workdir runs/cls4-long --set model.init_weights=runs/init/cls4-2000.safetensors

where `runs/init/cls4-2000.safetensors` is the first stage's EMA export (`colorjax weights
export runs/cls4`), i.e. the bundled file with its beta = 0.2 head calibration taken back out.
"""

from pathlib import Path

from colorjax.config import ExperimentConfig, load_config


def get_config() -> ExperimentConfig:
    """About 0.7 s a step at batch 32 on a free 2-core CPU; 7,000 steps is about 1.5 h."""
    c = load_config(Path(__file__).with_name("tinyimagenet_colornet_cls4.py"))
    c.optim.learning_rate = 5e-4
    c.optim.warmup_steps = 200
    c.optim.ema_decay = 0.999
    c.train.steps = 7000
    c.train.eval_every = 1000
    return c
