"""ColorNet (small, ab-bin classification at H/4) on Tiny ImageNet at 64 px: the bundled ColorNet.

Zhang et al.'s recipe at CPU scale: soft-encoded, class-rebalanced cross-entropy over the
in-gamut ab bins, predicted at a quarter of the input resolution (16x fewer logits than a
full-resolution head, so a step costs less than the full-resolution regression net's), decoded
with the annealed mean and upsampled. Regression with L1 predicts the per-pixel median, which
for most objects is a beige near the gray axis: that is the sepia of the old bundled weights.
Data paths are relative to the repository root; change them with `--set data.source=...`.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import tinyimagenet


def get_config() -> ExperimentConfig:
    """About 1.2 s a step at batch 32 on a free 2-core CPU; 2,000 steps is ~1.3 epochs."""
    c = tinyimagenet.get_config()
    c.model.name = "colornet-small-cls4"
    c.loss.rebalance_lambda = 0.5
    c.optim.learning_rate = 1e-3
    c.optim.b2 = 0.99
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 200
    c.optim.end_lr_fraction = 0.02
    c.optim.grad_clip_norm = 1.0
    c.optim.ema_decay = 0.998
    c.train.batch_size = 32
    c.train.steps = 2000
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.checkpoint_every = 250
    c.train.keep = 3
    return c
