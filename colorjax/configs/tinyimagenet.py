"""The Tiny ImageNet data block shared by every `experiments/tinyimagenet_*.py` config."""

from colorjax.config import DataConfig

DEFAULT_ROOT = "../shared/data/tiny-imagenet"


def tinyimagenet_data(root: str = DEFAULT_ROOT) -> DataConfig:
    """Train on ROOT/train (class folders), evaluate on ROOT/val, 64 px, gray photos dropped.

    Paths are relative to the working directory (the repository root); override them with
    `--set data.source=folder:PATH --set data.eval_source=folder:PATH`.
    """
    return DataConfig(
        source=f"folder:{root}/train",
        split="train",
        eval_source=f"folder:{root}/val",
        eval_split="all",
        image_size=64,
        val_fraction=0.0,
        # Near-gray photos (about 3% of Tiny ImageNet) teach nothing about colour.
        drop_gray_threshold=5.0,
        num_workers=1,
    )
