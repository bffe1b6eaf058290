"""Orbax checkpoints of a run: async saves, keep latest N and best PSNR, exact restore.

The store saves whatever state pytree it is given (with the data iterators' positions and the
config); it knows nothing of training, which imports it, never the reverse.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from colorjax.config import ExperimentConfig
from colorjax.errors import CheckpointWriteError, ConfigError, TrainingDivergedError

logger = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"
BEST_METRIC = "psnr"  # eval PSNR, higher is better
_SPACE_MARGIN = 1.1  # a checkpoint is its arrays plus small metadata files
_SPACE_SLACK = 1 << 20
_T = TypeVar("_T")
# Follow-up failures of Orbax's background threads once a write has failed.
_AFTERMATH = ("Event loop is closed", "cannot schedule new futures after")
_AFTERMATH_TIMEOUT_S = 30.0


def _os_error_in(err: BaseException | None) -> OSError | None:
    """The first OSError in an exception's cause/context chain (Orbax wraps them)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
    return None


# Orbax warns about options it adjusts when a manager is opened read-only on purpose.
_READ_ONLY_NOTES = ("Given directory is read only", "CheckpointManagerOptions.read_only=True")


class _OrbaxNoiseFilter(logging.Filter):
    """Drop Orbax log records that are noise for colorjax users (all kept with colorjax -v).

    A full disk makes every background writer thread log its own traceback (thousands of
    lines) while CheckpointStore raises one clear error; opening a run read-only (eval,
    export) makes Orbax warn that the directory is read only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        if not record.exc_info:
            return not record.getMessage().startswith(_READ_ONLY_NOTES)
        err = record.exc_info[1]
        if _os_error_in(err) is not None:
            return False
        return not any(text in str(err) for text in _AFTERMATH)


_FILTER = _OrbaxNoiseFilter()


def _join_orbax_threads(timeout: float) -> None:
    """Wait (bounded) for Orbax's writer threads, so their late reports meet our hooks.

    Their writes finish after the failure was raised; if the process exits first, the reports
    arrive during interpreter shutdown, when no hook or filter is left to catch them.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and type(thread).__module__.startswith("orbax"):
            thread.join(max(0.0, deadline - time.monotonic()))


def _quiet_closed_loop_reports() -> None:
    """After a failed write, drop the reports of writes that finish after Orbax's loop closed.

    TensorStore completes each in-flight array write by calling back into the event loop that
    Orbax already closed when the first write failed; every callback's RuntimeError reaches
    sys.excepthook, one traceback per array. The write failure itself is raised as one error.
    """
    previous = sys.excepthook
    if getattr(previous, "_colorjax_quiet", False):
        return

    def hook(exc_type: type, exc: BaseException, tb: Any) -> None:
        quiet = not logging.getLogger().isEnabledFor(logging.DEBUG)
        if quiet and isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
            return
        previous(exc_type, exc, tb)

    hook._colorjax_quiet = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def checkpoint_dir(workdir: str | Path) -> Path:
    """Where a work dir keeps its Orbax checkpoints."""
    return Path(workdir).absolute() / CHECKPOINT_SUBDIR


def _finalized_steps(directory: Path) -> list[int]:
    """Finished checkpoint steps (Orbax writes to a temp name and renames when complete)."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def checkpoint_steps(workdir: str | Path) -> list[int]:
    """The finished checkpoint steps of a run (numeric folders under WORKDIR/checkpoints)."""
    return _finalized_steps(checkpoint_dir(workdir))


def has_checkpoint(workdir: str | Path) -> bool:
    """True when the work dir holds at least one finished checkpoint."""
    return bool(checkpoint_steps(workdir))


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
        absl_logger = logging.getLogger("absl")  # Orbax logs through absl
        if _FILTER not in absl_logger.filters:
            absl_logger.addFilter(_FILTER)
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
            # Half-written step folders of a killed or failed run are removed on the next start.
            cleanup_tmp_directories=not read_only,
        )
        self.directory = checkpoint_dir(workdir)
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._pending: int | None = None  # the step of the save that may still be running
        self._failed = False

    def _guarded(self, fn: Callable[[], _T], step: int | None) -> _T:
        """Run an Orbax call; turn a failed write (disk full, permissions) into one clear error."""
        try:
            return fn()
        except Exception as err:
            os_error = _os_error_in(err)
            if os_error is None:
                raise
            self._failed = True
            _quiet_closed_loop_reports()
            raise CheckpointWriteError(self._write_failure(step, os_error)) from err

    def _write_failure(self, step: int | None, err: OSError, detail: str = "") -> str:
        """The message for a checkpoint that could not be written, naming the last good one."""
        good = [s for s in _finalized_steps(self.directory) if s != step]
        last = (
            f"the last good checkpoint is step {good[-1]}; free space (or fix the folder), then "
            "re-run the same command to resume from it"
            if good
            else "no checkpoint was written yet; free space (or fix the folder) and start again"
        )
        if err.errno == errno.ENOSPC:
            return (
                f"no space left on the device holding {self.directory} while saving step {step}"
                f"{detail}; {last}"
            )
        reason = err.strerror or str(err)
        return f"cannot write checkpoint step {step} in {self.directory} ({reason}); {last}"

    def _check_space(self, step: int, state: Any) -> None:
        """Refuse a save that cannot fit, before Orbax writes half of it."""
        if jax.process_count() > 1:
            return  # every process would have to agree; the write itself still fails cleanly
        need = sum(
            int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
            for leaf in jax.tree_util.tree_leaves(state)
            if hasattr(leaf, "shape")
        )
        need = int(need * _SPACE_MARGIN) + _SPACE_SLACK
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            return
        if free < need:
            self._failed = True
            detail = f" (it needs about {need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free)"
            raise CheckpointWriteError(
                self._write_failure(step, OSError(errno.ENOSPC, "No space left"), detail)
            )

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
        """Save one step; refuses (TrainingDivergedError) if a float in the state is not finite."""
        if not bool(tree_is_finite(state)):
            raise TrainingDivergedError(
                f"the state at step {step} is not finite (parameters or optimizer); not saving a "
                "checkpoint so the last good one stays intact. Lower optim.learning_rate or set "
                "optim.grad_clip_norm, then resume"
            )
        data = {"processes": _gather_json(data_state)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data),
            config=ocp.args.JsonSave(config.to_dict()),
        )
        # The previous async save must have finished (or failed, naming its own step) first.
        self._guarded(self.manager.wait_until_finished, self._pending)
        self._check_space(step, state)
        self._pending = step
        self._guarded(lambda: self.manager.save(step, args=args, metrics=metrics, force=True), step)

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

    def restore_items(self, step: int, abstract_items: dict[str, Any]) -> dict[str, Any]:
        """Restore only some top-level fields of the saved state (e.g. params and their EMA).

        What is not named (the optimizer's moments, the data iterators) is never read, so a
        run restored for inference needs no optimizer, and the optimizer-state structure of
        the run that wrote the checkpoint does not matter.
        """
        restore_args = jax.tree_util.tree_map(
            lambda x: ocp.ArrayRestoreArgs(
                sharding=x.sharding, global_shape=x.shape, dtype=x.dtype
            ),
            abstract_items,
        )
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    item=abstract_items, restore_args=restore_args, partial_restore=True
                )
            ),
        )
        return dict(restored["state"])

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
        self._guarded(self.manager.wait_until_finished, self._pending)

    def close(self) -> None:
        """Finish pending saves and release resources."""
        if self._failed:
            # The failure was reported already; Orbax's threads may fail again on the way out.
            _join_orbax_threads(timeout=_AFTERMATH_TIMEOUT_S)
            try:
                self.manager.close()
            except Exception as err:  # noqa: BLE001 - the first error is the one that matters
                logger.debug("closing the checkpoint manager after a failed write: %s", err)
            return
        try:
            self.wait()
        finally:
            self.manager.close()


def tree_is_finite(tree: Any) -> jax.Array:
    """Scalar bool: every floating leaf of `tree` is finite."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


# Why not Grain's own Orbax handler (grain.checkpoint.CheckpointSave/Restore, grain 0.2.18)?
# It writes one process_I-of-N.json per process, which would replace this all-gather, but:
# (1) it restores only into the same process count: any other count raises inside the
#     Composite restore, so the model state could not be restored either, where we log a
#     warning and restart the data iterators (a 2-host run resumed on 1 host);
# (2) it saves `get_state()` of a grain DatasetIterator (else it expects bytes) and restores
#     into a live iterator; our DataIterator wraps Grain's with skip counters and a version,
#     and `restore` returns the state so the caller decides what to do with it.
# One all-gather of a few hundred bytes per checkpoint is the price of both.
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
