"""The run folder: what a training writes and how a finished run is read back.

A run folder (``--workdir``) holds ``checkpoints/`` (Orbax, with the config), ``config.json``,
``metrics.jsonl`` (one JSON object per logged step) and ``run.json`` (commands, hardware, wall
time). This module writes the last three during training (``RunInfo``, ``MetricsWriter``,
``Reporter``, the work-dir lock) and reads a run back for inference and export
(``load_inference_params``, ``load_run``, ``training_info``) without building an optimizer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

import jax
from tqdm.auto import tqdm

from colorjax.checkpoint import CheckpointStore, checkpoint_dir, checkpoint_steps
from colorjax.config import ExperimentConfig
from colorjax.errors import ConfigError
from colorjax.fileio import atomic_write_text
from colorjax.train.state import (
    TrainState,
    abstract_state,
    debiased_ema,
    inference_params,
    make_task,
)
from colorjax.weights.fileformat import check_finite, flatten_variables
from colorjax.weights.loader import Pretrained, build_checked

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RUN_INFO_FILE = "run.json"  # command, hardware, wall time: what `weights export` records
LOCK_FILE = ".lock"  # held (flock) by the process 0 of the training using the work dir


class WorkdirLock:
    """An exclusive lock on WORKDIR/.lock for the life of a training (process 0 only).

    Two trainings in one work dir would interleave metrics.jsonl and race for its checkpoints.
    The lock is the kernel's (flock), so it dies with its process: a killed run leaves no stale
    lock behind. The file records who holds it, for the error the second run shows.
    """

    def __init__(self, workdir: Path, enabled: bool) -> None:
        self.path = workdir / LOCK_FILE
        self.enabled = enabled
        self._fh: Any = None

    def __enter__(self) -> WorkdirLock:
        if not self.enabled:
            return self
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise ConfigError(
                f"{self.path.parent} is in use by another training ({holder}); wait for it to "
                "finish or stop it, or pass another --workdir"
            ) from None
        fh.seek(0)
        fh.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        fh.write(f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def due(step: int, every: int, total: int) -> bool:
    """Whether a periodic action runs after update `step` of `total` (steps count from 1).

    Every `every` steps and always after the last one; never when `every` <= 0 (disabled),
    and never at step 0, before any update (a resumed run does not redo what it saved).
    """
    if every <= 0 or step <= 0:
        return False
    return step % every == 0 or step == total


def hardware_description() -> str:
    """One line naming the devices and host a run used (for the weights manifest)."""
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return (
        f"{len(devices)} x {', '.join(kinds)} ({jax.default_backend()} backend, "
        f"{jax.process_count()} process(es)); host {platform.machine()} with "
        f"{os.cpu_count()} CPU cores; JAX {jax.__version__}"
    )


class RunInfo:
    """WORKDIR/run.json: the commands that trained the run, its hardware and wall time."""

    def __init__(self, workdir: Path, command: str | None, enabled: bool, resumed: bool) -> None:
        self.path = workdir / RUN_INFO_FILE
        self.enabled = enabled
        self.start = time.perf_counter()
        previous: dict[str, Any] = {}
        if resumed and self.path.is_file():
            try:
                previous = json.loads(self.path.read_text())
            except ValueError:
                previous = {}  # a damaged file only loses the history, never the run
        self.commands = [c for c in previous.get("commands", []) if isinstance(c, str)]
        if command and command not in self.commands:
            self.commands.append(command)
        self.seconds_before = float(previous.get("seconds", 0.0) or 0.0)

    def write(self, step: int) -> None:
        """Record the state after `step` (called with each checkpoint)."""
        if not self.enabled:
            return
        info = {
            "commands": self.commands,
            "hardware": hardware_description(),
            "seconds": self.seconds_before + time.perf_counter() - self.start,
            "step": step,
        }
        atomic_write_text(self.path, json.dumps(info, indent=2) + "\n")


class MetricsWriter:
    """Appends one JSON object per line to DIR/metrics.jsonl (process 0 only)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        """Open for appending; on resume drop records from steps after the checkpoint."""
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        if resume_step is not None and path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            atomic_write_text(path, "".join(line + "\n" for line in kept))
        elif resume_step is None and path.exists():
            path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and flush (so a crash loses at most the current line)."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


class Reporter:
    """Shows and records training and eval metrics: progress bar, images/s, metrics.jsonl."""

    def __init__(
        self,
        writer: MetricsWriter,
        *,
        start: int,
        total: int,
        log_every: int,
        batch_size: int,
        show: bool,
    ) -> None:
        self.writer = writer
        self.total = total
        self.log_every = log_every
        self.batch_size = batch_size
        self.show = show
        # Until the first step returns, the time goes to compiling: say so, and keep that time
        # out of the bar's rate and ETA (which would otherwise promise hours for minutes).
        self.bar = tqdm(
            total=total,
            initial=start,
            disable=not show,
            unit="step",
            dynamic_ncols=True,
            desc="compiling",
        )
        self._compiled = False
        self._clock = (time.perf_counter(), start)  # throughput since the last logged step

    def train(self, step: int, values: dict[str, float]) -> dict[str, float]:
        """Advance the bar to `step`; at logging steps add images/s and write a record."""
        if not self._compiled and not self.bar.disable:
            # The bar's rate and ETA count from the end of the first (compiled) step on.
            self._compiled = True
            self.bar.set_description_str("train", refresh=False)
            self.bar.n = self.bar.initial = self.bar.last_print_n = step
            self.bar.start_t = self.bar.last_print_t = time.time()  # tqdm's own clock
            self.bar.refresh()
        self.bar.update(step - self.bar.n)
        if due(step, self.log_every, self.total):
            now = time.perf_counter()
            then, then_step = self._clock
            ips = (step - then_step) * self.batch_size / max(now - then, 1e-9)
            self._clock = (now, step)
            self.bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{ips:.1f}")
            record = {"step": step, "kind": "train", **values, "images_per_sec": ips}
            self.writer.write({**record, "time": time.time()})
        return values

    def eval(self, step: int, values: dict[str, float]) -> dict[str, float]:
        """Write an eval record and log it (process 0)."""
        self.writer.write({"step": step, "kind": "eval", **values, "time": time.time()})
        if self.writer.enabled:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items()))
            logger.info("step %d eval: %s", step, shown)
        return values

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()


# ------------------------------------------------------------------ reading a run back


def _checked_step(workdir: str | os.PathLike, step: int | None) -> int:
    """`step` (or the latest) when the run kept it; ConfigError naming the kept steps if not."""
    steps = checkpoint_steps(workdir)
    if not steps:
        raise ConfigError(
            f"no checkpoint in {checkpoint_dir(workdir)}; pass the --workdir of a training run"
        )
    if step is not None and step not in steps:
        raise ConfigError(
            f"no checkpoint at step {step} in {checkpoint_dir(workdir)}; the run kept steps "
            f"{', '.join(map(str, steps))} (pass one of them with --step, or leave it out for "
            "the latest)"
        )
    return steps[-1] if step is None else step


def load_inference_params(
    workdir: str | os.PathLike, step: int | None = None, *, ema: bool = True
) -> tuple[ExperimentConfig, dict[str, Any]]:
    """(config, {'params': ...}) from a training run: the debiased EMA when the run kept one.

    Only the parameters and their EMA are read from the checkpoint (no optimizer is built and
    its moments stay on disk). ema=False gives the live (last trained) parameters instead.
    """
    step = _checked_step(workdir, step)
    store = CheckpointStore(workdir, read_only=True, async_save=False)
    try:
        config = store.read_config(step)
        task = make_task(config, optimizers=False)
        where = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = abstract_state(task, where)
        wanted = {"step": abstract.step, "params": abstract.params}
        if ema and abstract.ema_params is not None:
            wanted["ema_params"] = abstract.ema_params
        items = store.restore_items(step, wanted)
    finally:
        store.close()
    state = TrainState(step=items["step"], params=items["params"], opt_state=None, rng=None)
    if "ema_params" in items:
        state = state.replace(ema_params=debiased_ema(task, state.replace(**items)))
    params = inference_params(task, state)  # the live ones when no EMA was read
    # A checkpoint is refused when non-finite at save time, but the disk may still flip a bit.
    check_finite(flatten_variables({"params": params}), f"the checkpoint in {workdir}")
    return config, {"params": params}


def load_run(workdir: str | os.PathLike, step: int | None = None, ema: bool = True) -> Pretrained:
    """A training run's checkpoint (its debiased EMA unless ema=False) with its model."""
    config, variables = load_inference_params(workdir, step, ema=ema)
    overrides = dict(config.model.overrides)
    meta = {
        "name": None,
        "model": config.model.name,
        "overrides": overrides,
        "workdir": os.fspath(workdir),
        "working_size": int(config.data.image_size),
    }
    return build_checked(config.model.name, overrides, variables, meta, os.fspath(workdir))


def read_run_info(workdir: str | os.PathLike) -> dict[str, Any]:
    """What `colorjax train` recorded in WORKDIR/run.json (commands, hardware, seconds)."""
    try:
        info = json.loads((Path(workdir) / RUN_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def training_info(workdir: str | os.PathLike, config: Any, step: int | None) -> dict[str, Any]:
    """What a weights header records about training: config, data source, step, last eval."""
    info: dict[str, Any] = {"workdir": str(Path(workdir).resolve())}
    with contextlib.suppress(AttributeError):
        info["data"] = config.data.source
    with contextlib.suppress(AttributeError, TypeError):
        info["config"] = config.to_dict()
    steps = checkpoint_steps(workdir)
    info["step"] = step if step is not None else (steps[-1] if steps else None)
    info["eval"] = last_eval(workdir, info["step"])
    return info


def last_eval(workdir: str | os.PathLike, step: int | None) -> dict[str, float]:
    """The run's last logged eval metrics at or before `step` (empty if none)."""
    path = Path(workdir) / METRICS_FILE
    found: dict[str, float] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash says nothing reliable
        if not isinstance(record, dict) or record.get("kind") != "eval":
            continue
        if step is not None and isinstance(record.get("step"), int) and record["step"] > step:
            continue
        found = {
            k: float(v)
            for k, v in record.items()
            if k not in ("kind", "step", "time") and isinstance(v, (int, float))
        }
    return found
