"""The base config: every preset and experiment starts from `get_config()` and changes fields."""

from colorjax.config import ExperimentConfig


def get_config() -> ExperimentConfig:
    """colornet-tiny on the embedded photos with the field defaults of colorjax.config.

    Derive with `c = default.get_config()` rather than `ExperimentConfig()`, so a default
    changed here reaches every experiment at once.
    """
    return ExperimentConfig()
