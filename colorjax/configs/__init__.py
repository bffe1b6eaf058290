"""Experiment presets shipped inside the package: `--config NAME` finds them from any folder."""
