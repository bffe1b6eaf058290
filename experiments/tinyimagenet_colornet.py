"""ColorNet (tiny, classification head) on Tiny ImageNet at 64 px: trains the bundled weights.

About 20-30 minutes on a 2-core CPU. Data paths are relative to the repository root and can
be changed with `--set data.source=folder:PATH --set data.eval_source=folder:PATH`.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import tinyimagenet


def get_config() -> ExperimentConfig:
    """Zhang et al.-style rebalanced classification, shortened for a CPU budget."""
    c = tinyimagenet.get_config()
    c.model.name = "colornet-tiny-cls"
    c.optim.learning_rate = 1e-3  # far above Zhang et al.'s 3e-5: a few thousand steps, not 450k
    c.optim.b2 = 0.99
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 100
    c.optim.end_lr_fraction = 0.05
    c.optim.grad_clip_norm = 1.0
    c.optim.ema_decay = 0.99
    c.loss.rebalance_lambda = 0.5
    # Full-resolution 261-way logits make a step ~5x a regression step: batch 16 keeps the
    # run near 20-30 minutes on 2 CPU cores (measured ~1 CPU-second per step).
    c.train.batch_size = 16
    c.train.steps = 2000
    c.train.log_every = 20
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    c.train.keep = 2
    return c
