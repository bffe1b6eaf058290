"""DeepColorization (small U-Net + PatchGAN) on Tiny ImageNet at 64 px: trains the bundled weights.

About 20-30 minutes on a 2-core CPU. Data paths are relative to the repository root and can
be changed with `--set data.source=folder:PATH --set data.eval_source=folder:PATH`.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import tinyimagenet


def get_config() -> ExperimentConfig:
    """pix2pix objective (vanilla GAN + 100 * L1, Adam 2e-4, beta1 0.5), shortened for CPU."""
    c = tinyimagenet.get_config()
    c.model.name = "deepcolorization-small"
    c.optim.learning_rate = 2e-4
    c.optim.b1 = 0.5
    c.optim.b2 = 0.999
    c.optim.schedule = "linear"  # pix2pix: constant for the first half, then linear to zero
    c.optim.constant_fraction = 0.5
    c.optim.end_lr_fraction = 0.0
    c.optim.ema_decay = 0.99
    c.loss.gan = "vanilla"
    c.loss.lambda_l1 = 100.0
    # ~0.7 CPU-seconds per step at batch 32 (measured), so 2000 steps fit in 20-30 minutes.
    c.train.batch_size = 32
    c.train.steps = 2000
    c.train.log_every = 20
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    c.train.keep = 2
    return c
