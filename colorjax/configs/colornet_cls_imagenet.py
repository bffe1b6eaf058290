"""ColorNet classification on ImageNet with Zhang et al. 2016 ("Colorful Image Colorization").

Paper settings: 313 ab bins (grid 10), soft-encoding with 5 neighbours and sigma 5,
class rebalancing lambda 0.5, annealed-mean temperature 0.38 at inference; Adam with
lr 3e-5, beta1 0.9, beta2 0.99, weight decay 1e-3, batch 40, ~450k iterations, the
learning rate dropped to 1e-5 and 3e-6 late in training (approximated here by a cosine
decay to 0.1x), 256x256 inputs. ImageNet must be prepared for TFDS manually.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import default


def get_config() -> ExperimentConfig:
    """Full-scale classification run for accelerators."""
    c = default.get_config()
    c.model.name = "colornet-base-cls"
    c.data.source = "tfds:imagenet2012"
    c.data.split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 256
    c.data.drop_gray_threshold = 5.0
    c.data.num_workers = 16
    c.optim.optimizer = "adamw"
    c.optim.learning_rate = 3e-5
    c.optim.b1 = 0.9
    c.optim.b2 = 0.99
    c.optim.weight_decay = 1e-3
    c.optim.schedule = "cosine"
    c.optim.end_lr_fraction = 0.1
    c.loss.rebalance_lambda = 0.5
    c.loss.soft_sigma = 5.0
    c.loss.soft_neighbors = 5
    c.train.batch_size = 40
    c.train.steps = 450_000
    c.train.dtype = "bfloat16"
    c.train.log_every = 100
    c.train.eval_every = 10_000
    c.train.eval_batch_size = 40
    c.train.eval_batches = 25
    c.train.checkpoint_every = 10_000
    c.train.keep = 3
    return c
