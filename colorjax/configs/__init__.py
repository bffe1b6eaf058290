"""Experiment presets shipped inside the package: `--config NAME` finds them from any folder.

`default.get_config()` is the base every preset and every `experiments/*.py` file derives
from (flax's configs/default.py pattern); `tinyimagenet` adds the Tiny ImageNet data block
and evaluation set shared by the `experiments/tinyimagenet_*.py` runs.
"""
