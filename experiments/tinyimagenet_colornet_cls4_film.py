"""ColorNet cls4 with FiLM fusion, third stage: the second stage's weights, a scene path that lives.

The second stage (`tinyimagenet_colornet_cls4_long.py`) coloured blue regions less yellow than
warm ones but left foliage brown, and its global branch had died again (99 % of
`global_dense_0` never positive on a photo): through the concat alone the scene vector's
per-image constant is mostly removed by the fusion GroupNorm. `colornet-small-cls4-film` adds a
per-channel scale and shift from the scene vector after that norm (zero-initialised) and GELU
dense layers. Every other layer keeps its shape, so this stage starts from the second stage's
exported weights. The whole global branch is re-drawn: its trained convs had collapsed too
(pooled features that differ between photos by ~4 % of their mean, a tenth of them always 0),
and the first dense layer is rescaled to see standardised pooled features (`--standardize-scene`):

    colorjax weights export --workdir runs/cls4-long --name cls4-long --out runs/export
    python benchmarks/warm_start.py --weights runs/export/cls4-long.safetensors \
        --model colornet-small-cls4-film \
        --reinit global_conv_0 global_conv_1 global_conv_2 global_conv_3 \
        global_dense_0 global_dense_1 global_dense_2 \
        --standardize-scene --data folder:../shared/data/tiny-imagenet/train \
        --out runs/init/cls4-long-film.safetensors
    colorjax train --config experiments/tinyimagenet_colornet_cls4_film.py --workdir \
        runs/cls4-film --set model.init_weights=runs/init/cls4-long-film.safetensors
"""

from pathlib import Path

from colorjax.config import ExperimentConfig, load_config


def get_config() -> ExperimentConfig:
    """The second stage's plain cross-entropy recipe on the FiLM variant (~0.45 s a step)."""
    c = load_config(Path(__file__).with_name("tinyimagenet_colornet_cls4_long.py"))
    c.model.name = "colornet-small-cls4-film"
    c.train.steps = 8000
    return c
