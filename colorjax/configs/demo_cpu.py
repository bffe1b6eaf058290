"""Demo: colornet-tiny on the embedded photos at 64 px; a few minutes on a 2-core CPU."""

from colorjax.config import ExperimentConfig
from colorjax.configs import default


def get_config() -> ExperimentConfig:
    """Small regression run that shows the loss falling and colours appearing."""
    c = default.get_config()
    c.model.name = "colornet-tiny"
    c.data.source = "embedded"
    c.data.split = "train"
    c.data.eval_split = "validation"
    c.data.val_fraction = 0.1
    c.data.image_size = 64
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 20
    c.optim.grad_clip_norm = 1.0
    c.loss.regression = "huber"
    c.train.batch_size = 16
    c.train.steps = 300
    c.train.log_every = 10
    c.train.eval_every = 100
    c.train.eval_batch_size = 8
    c.train.eval_batches = 1
    c.train.checkpoint_every = 100
    c.train.keep = 2
    return c
