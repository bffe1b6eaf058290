"""ColorNet-Lite2, second stage with class rebalancing in the loss (the encoder still frozen).

The first stage (`tinyimagenet_colornet_lite2.py`) learned the calibrated posterior with plain
cross-entropy; rebalancing was put back at inference as one head-bias shift for every photo.
That shift cannot tell water from a wall: the cyan sector (sea, glacier, pool) stayed near
0.35 while green and blue passed. Here the decoder keeps training from the first stage with
Zhang et al.'s rebalanced loss (lambda 0.5), so rare colours are learned where the features
say they belong instead of being boosted everywhere. Start from the first stage's export:

    colorjax weights export --workdir runs/lite2 --name lite2-stage1 --out runs/export
    colorjax train --config experiments/tinyimagenet_colornet_lite2_rebalanced.py \
        --workdir runs/lite2-rb --cpu-devices 2 \
        --set model.init_weights=runs/export/lite2-stage1.safetensors
"""

from pathlib import Path

from colorjax.config import ExperimentConfig, load_config


def get_config() -> ExperimentConfig:
    """Short warm-up (Adam's moments are new), a lower lr than the first stage, cosine to 2 %."""
    c = load_config(Path(__file__).with_name("tinyimagenet_colornet_lite2.py"))
    c.loss.rebalance_lambda = 0.5
    c.optim.learning_rate = 3e-4
    c.optim.warmup_steps = 100
    c.train.steps = 1200
    c.train.eval_every = 400
    return c
