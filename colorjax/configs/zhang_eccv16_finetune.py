"""Fine-tune Zhang et al.'s ECCV16 colorizer on your own photos (class-rebalanced CE, 313 bins).

    colorjax weights download zhang-eccv16      # or: colorjax weights import FILE --name ...
    colorjax train --config zhang_eccv16_finetune --workdir runs/zhang-ft \
        --set data.source=folder:PHOTOS_DIR

Starts from the official weights (model.init_weights) with a small constant learning rate, as
fine-tuning a network trained for days on ImageNet should; use
--set loss.zhang_head=regression for an L1 loss on the decoded ab instead.
"""

from colorjax.config import ExperimentConfig
from colorjax.configs import default


def get_config() -> ExperimentConfig:
    """ECCV16 from its official weights, 256 px photos, Adam 1e-5."""
    c = default.get_config()
    c.model.name = "zhang-eccv16"
    c.model.init_weights = "zhang-eccv16"
    c.data.source = "folder:photos"
    c.data.val_fraction = 0.05
    c.data.image_size = 256
    c.data.drop_gray_threshold = 5.0
    c.loss.zhang_head = "classification"
    c.optim.learning_rate = 1e-5
    c.optim.schedule = "constant"
    c.optim.grad_clip_norm = 1.0
    c.train.batch_size = 8
    c.train.steps = 2000
    c.train.eval_every = 500
    c.train.eval_batch_size = 8
    c.train.checkpoint_every = 500
    return c
