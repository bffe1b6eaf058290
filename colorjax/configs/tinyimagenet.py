"""Base of the `experiments/tinyimagenet_*.py` runs: Tiny ImageNet at 64 px and its eval set."""

from colorjax.config import DataConfig, ExperimentConfig
from colorjax.configs import default

DEFAULT_ROOT = "../shared/data/tiny-imagenet"


def get_config() -> ExperimentConfig:
    """Train on ROOT/train (class folders), evaluate on 2 x 64 images of ROOT/val, with Adam.

    Paths are relative to the working directory (the repository root); override them with
    `--set data.source=folder:PATH --set data.eval_source=folder:PATH`.
    """
    c = default.get_config()
    c.data = DataConfig(
        source=f"folder:{DEFAULT_ROOT}/train",
        split="train",
        eval_source=f"folder:{DEFAULT_ROOT}/val",
        eval_split="all",
        image_size=64,
        val_fraction=0.0,
        # Near-gray photos (about 3% of Tiny ImageNet) teach nothing about colour.
        drop_gray_threshold=5.0,
        num_workers=1,
    )
    c.optim.optimizer = "adam"
    c.train.eval_batch_size = 64
    c.train.eval_batches = 2
    return c
