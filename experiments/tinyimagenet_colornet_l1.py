"""ColorNet (tiny, L1 regression) on Tiny ImageNet at 64 px: trains the bundled ColorNet weights.

Regression steps cost about a fifth of the classification head's on a CPU (no 261-way
logits at full resolution), so in a fixed CPU budget this model sees several epochs where
`tinyimagenet_colornet.py` (classification) sees one. Data paths are relative to the
repository root; change them with `--set data.source=folder:PATH --set data.eval_source=...`.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import tinyimagenet


def get_config() -> ExperimentConfig:
    """L1 on ab (the median: less wash-out than L2), warm-up + cosine, EMA weights."""
    c = tinyimagenet.get_config()
    c.model.name = "colornet-tiny"
    c.loss.regression = "l1"
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 200
    c.optim.end_lr_fraction = 0.02
    c.optim.grad_clip_norm = 1.0
    c.optim.ema_decay = 0.998
    c.train.batch_size = 32
    c.train.steps = 6000
    c.train.log_every = 50
    c.train.eval_every = 1000
    c.train.checkpoint_every = 500
    c.train.keep = 2
    return c
