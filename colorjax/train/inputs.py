"""A run's input: this process's training loader and the fixed evaluation batches."""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh

from colorjax.config import ExperimentConfig
from colorjax.parallel import check_batch_divisible, global_batch_from_local


def make_data_loader(config: ExperimentConfig, *, train: bool, per_process: int) -> Any:
    """This process's resumable loader for the training split or the evaluation split."""
    from colorjax.data import make_loader, make_source  # Grain: only when a run starts

    d = config.data
    source = make_source(
        d.source if train else (d.eval_source or d.source),
        split=d.split if train else d.eval_split,
        data_dir=d.data_dir,
        val_fraction=d.val_fraction,
        seed=config.train.seed,
    )
    return make_loader(
        source,
        batch_size=per_process,
        image_size=d.image_size,
        train=train,
        seed=config.train.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_workers=d.num_workers if train else 0,
        drop_gray_threshold=d.drop_gray_threshold if train else None,
        num_epochs=None,
    )


def eval_batches(config: ExperimentConfig, mesh: Mesh) -> list[Any]:
    """A fixed validation set: the first `eval_batches` global batches of the eval split."""
    t = config.train
    per_process = check_batch_divisible(t.eval_batch_size, mesh, "train.eval_batch_size")
    loader = make_data_loader(config, train=False, per_process=per_process)
    try:
        return [global_batch_from_local(next(loader), mesh) for _ in range(t.eval_batches)]
    finally:
        loader.close()
