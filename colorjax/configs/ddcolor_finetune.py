"""Fine-tune DDColor on your own photos from the official weights: L1 plus colourfulness.

    colorjax weights download ddcolor-paper-tiny.official   # or: weights import FILE --name ...
    colorjax train --config ddcolor_finetune --workdir runs/ddcolor-ft \
        --set data.source=folder:PHOTOS_DIR

DDColor's recipe (options/train/train_ddcolor.yml) is L1 on ab (weight 0.1, in CIE units),
a VGG16-BN perceptual loss (5.0), a GAN (1.0) and the colourfulness term (0.5, summed over a
batch of 4). Here ab is normalised by 110 and the colourfulness term is a batch mean, so the
same balance of L1 to colourfulness is loss.colorfulness_weight = 0.5 * 4 / (0.1 * 110) =
0.18. The perceptual loss needs VGG weights colorjax does not ship (see the README), and the
GAN is not wired for DDColor; both are left out. --set model.name=ddcolor-large with
model.init_weights=ddcolor-modelscope.official fine-tunes the large model.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import default


def get_config() -> ExperimentConfig:
    """DDColor-T from ddcolor-paper-tiny.official, 256 px photos, AdamW 1e-5, L1 + 0.18 CF."""
    c = default.get_config()
    c.model.name = "ddcolor-tiny"
    c.model.init_weights = "ddcolor-paper-tiny.official"
    c.data.source = "folder:photos"
    c.data.val_fraction = 0.05
    c.data.image_size = 256  # DDColor trains on 256 px crops and colorizes at 512
    c.data.drop_gray_threshold = 5.0
    c.loss.regression = "l1"
    c.loss.colorfulness_weight = 0.18
    c.optim.optimizer = "adamw"
    c.optim.weight_decay = 0.01
    c.optim.learning_rate = 1e-5
    c.optim.schedule = "constant"
    c.optim.grad_clip_norm = 1.0
    c.train.batch_size = 4
    c.train.steps = 2000
    c.train.eval_every = 500
    c.train.eval_batch_size = 4
    c.train.checkpoint_every = 500
    return c
