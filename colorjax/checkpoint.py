"""Orbax checkpoints: async saves, keep latest N and best PSNR, exact restore, params export."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from colorjax.config import ExperimentConfig
from colorjax.errors import ConfigError, TrainingDivergedError

logger = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"
BEST_METRIC = "psnr"  # eval PSNR, higher is better


def checkpoint_dir(workdir: str | Path) -> Path:
    """Where a work dir keeps its Orbax checkpoints."""
    return Path(workdir).absolute() / CHECKPOINT_SUBDIR


def _finalized_steps(directory: Path) -> list[int]:
    """Finished checkpoint steps (Orbax writes to a temp name and renames when complete)."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def has_checkpoint(workdir: str | Path) -> bool:
    """True when the work dir holds at least one finished checkpoint."""
    return bool(_finalized_steps(checkpoint_dir(workdir)))


class CheckpointStore:
    """A CheckpointManager holding state, data-iterator positions and the config per step."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        keep: int = 3,
        keep_best: bool = True,
        async_save: bool = True,
        read_only: bool = False,
    ) -> None:
        """Open (or create) DIR/checkpoints with keep-latest-N (+ best eval PSNR) retention."""
        policies: list[Any] = [ocm.LatestN(n=keep)]
        if keep_best:
            policies.append(
                ocm.BestN(
                    get_metric_fn=lambda m: float(m[BEST_METRIC]),
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=not read_only,
            read_only=read_only,
        )
        self.directory = checkpoint_dir(workdir)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """Newest finished step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """All retained steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        data_state: Any,
        config: ExperimentConfig,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Save one step; refuses (TrainingDivergedError) if any parameter is non-finite."""
        from colorjax.train.state import tree_is_finite

        finite = bool(tree_is_finite((state.params, state.ema_params)))
        if not finite:
            raise TrainingDivergedError(
                f"parameters at step {step} are not finite; not saving a checkpoint so the last "
                "good one stays intact. Lower optim.learning_rate or set optim.grad_clip_norm, "
                "then resume"
            )
        data = {"processes": _gather_json(data_state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data),
            config=ocp.args.JsonSave(config.to_dict()),
        )
        self.manager.save(step, args=args, metrics=metrics, force=True)

    def restore(self, step: int | None, abstract_state: Any) -> tuple[Any, Any, ExperimentConfig]:
        """Restore (state, this process's data-iterator state, config) into `abstract_state`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ConfigError(f"no checkpoint in {self.directory}; train first or fix --workdir")
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        states = restored["data"]["processes"]
        if len(states) == jax.process_count():
            data_state = states[jax.process_index()]
        else:
            logger.warning(
                "checkpoint was written by %d processes but %d are running; the data iterators "
                "restart from their beginning",
                len(states),
                jax.process_count(),
            )
            data_state = None
        return restored["state"], data_state, ExperimentConfig.from_dict(restored["config"])

    def read_config(self, step: int | None = None) -> ExperimentConfig:
        """The config stored with a checkpoint (latest by default)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ConfigError(f"no checkpoint in {self.directory}; train first or fix --workdir")
        restored = self.manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
        )
        return ExperimentConfig.from_dict(restored["config"])

    def wait(self) -> None:
        """Block until async saves have finished."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release resources."""
        self.manager.wait_until_finished()
        self.manager.close()


def _gather_json(value: Any) -> list[Any]:
    """Every process's JSON-serialisable value, in process order (only process 0 writes JSON)."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    raw = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
    lengths = multihost_utils.process_allgather(np.asarray([raw.size], np.int32))
    lengths = np.asarray(lengths).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: raw.size] = raw
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(bytes(row[:n]).decode()) for row, n in zip(gathered, lengths, strict=True)]


def load_inference_params(
    workdir: str | Path, step: int | None = None
) -> tuple[ExperimentConfig, dict[str, Any]]:
    """(config, {'params': ...}) from a training run; EMA weights when the run kept them."""
    from colorjax.train.state import abstract_state, inference_params, make_task

    if not has_checkpoint(workdir):
        raise ConfigError(
            f"no checkpoint in {checkpoint_dir(workdir)}; pass the --workdir of a training run"
        )
    store = CheckpointStore(workdir, read_only=True, async_save=False)
    try:
        config = store.read_config(step)
        task = make_task(config)
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state, _, _ = store.restore(step, abstract_state(task, sharding))
    finally:
        store.close()
    from colorjax.hub import check_finite, flatten_variables

    params = inference_params(task, state)
    # A checkpoint is refused when non-finite at save time, but the disk may still flip a bit.
    check_finite(flatten_variables({"params": params}), f"the checkpoint in {workdir}")
    return config, {"params": params}
