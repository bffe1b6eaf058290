"""Demo preset (kept for `--config experiments/demo_cpu.py`); it lives in colorjax/configs."""

from colorjax.configs.demo_cpu import get_config

__all__ = ["get_config"]
