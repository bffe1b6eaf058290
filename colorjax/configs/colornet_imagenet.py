"""ColorNet regression on ImageNet (tfds:imagenet2012) with Iizuka et al. 2016-style settings.

Iizuka et al. train with an MSE loss on ab at 224x224 with batch 128 for ~200k iterations
(Adadelta); here Adam with warm-up + cosine replaces Adadelta, the rest follows the paper.
ImageNet must be prepared for TFDS manually (see the TFDS imagenet2012 page); pass
`--set data.data_dir=PATH` if it is not in the default TFDS directory.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import default


def get_config() -> ExperimentConfig:
    """Full-scale regression run for accelerators."""
    c = default.get_config()
    c.model.name = "colornet-base"
    c.data.source = "tfds:imagenet2012"
    c.data.split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 224
    c.data.drop_gray_threshold = 5.0
    c.data.num_workers = 16
    c.optim.optimizer = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 2000
    c.optim.end_lr_fraction = 0.01
    c.optim.grad_clip_norm = 1.0
    c.optim.ema_decay = 0.999
    c.loss.regression = "l2"
    c.train.batch_size = 128
    c.train.steps = 200_000
    c.train.dtype = "bfloat16"
    c.train.log_every = 100
    c.train.eval_every = 5000
    c.train.eval_batch_size = 128
    c.train.eval_batches = 8
    c.train.checkpoint_every = 5000
    c.train.keep = 3
    return c
