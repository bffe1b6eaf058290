"""DeepColorization (ColorNet generator + PatchGAN) on Tiny ImageNet: the NoGAN recipe's GAN phase.

DeOldify's "NoGAN": the generator is pretrained with the colour loss alone (the bundled
ColorNet runs, `tinyimagenet_colornet_cls4.py` then `tinyimagenet_colornet_cls4_long.py`), then a
short adversarial phase with a fresh PatchGAN sharpens and saturates the colour while the bin
cross-entropy (unrebalanced, as in the second ColorNet stage) stays on. Start it from the
exported ColorNet weights:

    colorjax weights export --workdir runs/cls4-long --name cls4-long --out runs/export
    colorjax train --config experiments/tinyimagenet_deepcolorization_nogan.py \
        --workdir runs/nogan --set model.init_weights=runs/export/cls4-long.safetensors
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import tinyimagenet


def get_config() -> ExperimentConfig:
    """A few hundred steps at a low generator learning rate: D leads, G adapts."""
    c = tinyimagenet.get_config()
    c.model.name = "deepcolorization-colornet"
    c.loss.gan = "lsgan"  # bounded gradients: a fresh D cannot blow up a pretrained G
    c.loss.lambda_ce = 3.0  # ~10 with CE ~3.3 vs adversarial ~0.3-1: colour loss leads
    c.loss.lambda_l1 = 10.0
    c.loss.rebalance_lambda = 1.0  # plain CE, as pretrained; rebalancing goes back at inference
    c.optim.learning_rate = 5e-5
    c.optim.d_learning_rate = 2e-4
    c.optim.b1 = 0.5
    c.optim.schedule = "constant"
    c.optim.grad_clip_norm = 1.0
    c.optim.ema_decay = 0.99
    c.train.batch_size = 16
    c.train.steps = 400
    c.train.log_every = 25
    c.train.eval_every = 200
    c.train.checkpoint_every = 100
    c.train.keep = 2
    return c
