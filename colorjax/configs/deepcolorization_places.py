"""DeepColorization (pix2pix U-Net 256 + 70x70 PatchGAN) on Places365 (tfds:places365_small).

pix2pix settings (Isola et al. 2017): vanilla GAN loss + lambda_L1 = 100 * L1, Adam lr 2e-4
with beta1 0.5, constant for the first half of training then linearly to zero, dropout
in the generator as noise, 256x256 inputs. pix2pix used batch 1-10 on one GPU; batch 32
here spreads over data-parallel devices.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import default


def get_config() -> ExperimentConfig:
    """Full-scale conditional-GAN run for accelerators."""
    c = default.get_config()
    c.model.name = "deepcolorization-unet256"
    c.data.source = "tfds:places365_small"
    c.data.split = "train"
    c.data.eval_split = "validation"
    c.data.image_size = 256
    c.data.drop_gray_threshold = 5.0
    c.data.num_workers = 16
    c.optim.optimizer = "adam"
    c.optim.learning_rate = 2e-4
    c.optim.b1 = 0.5
    c.optim.b2 = 0.999
    c.optim.schedule = "linear"
    c.optim.constant_fraction = 0.5
    c.optim.end_lr_fraction = 0.0
    c.optim.ema_decay = 0.999
    c.loss.gan = "vanilla"
    c.loss.lambda_l1 = 100.0
    c.train.batch_size = 32
    c.train.steps = 200_000
    c.train.dtype = "bfloat16"
    c.train.log_every = 100
    c.train.eval_every = 5000
    c.train.eval_batch_size = 32
    c.train.eval_batches = 8
    c.train.checkpoint_every = 5000
    c.train.keep = 3
    return c
