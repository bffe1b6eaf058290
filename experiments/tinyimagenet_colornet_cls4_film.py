"""ColorNet cls4 with FiLM fusion, third stage: the second stage's weights, a scene path that lives.

The second stage (`tinyimagenet_colornet_cls4_long.py`) coloured blue regions less yellow than
warm ones but left foliage brown, and its global branch was dead (the scene vector exactly 0 on
every photo), so the net never saw the scene. `colornet-small-cls4-film` drops the tiled scene
vector from the fusion conv's input and instead scales and shifts that conv's normalised output
with a zero-initialised Dense of the scene vector (FiLM), with GELU dense layers. This stage
starts from the second stage's exported weights, which it computes exactly at step 0 (the
dropped kernel rows only ever saw 0; `warm_start.py` folds their mean into the bias and checks
the logits), with the whole global branch re-drawn and its first dense layer rescaled to see
standardised pooled features (`--standardize-scene`).

A first attempt kept the concat and added FiLM on top: the re-drawn branch fed noise into the
trained fusion conv, and the optimiser silenced it within 2,000 steps (GELU units 0 % -> 100 %
never positive, FiLM output constant).

    colorjax weights export --workdir runs/cls4-long --name cls4-long --out runs/export
    python tools/warm_start.py --weights runs/export/cls4-long.safetensors \
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
    # The palette loss: the global branch's own signal (without it the branch went quiet again).
    c.loss.scene_weight = 0.5
    c.train.steps = 4000
    return c
