"""The training loop: data, sharded steps, progress, metrics JSON lines, eval and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from colorjax.checkpoint import CheckpointStore, has_checkpoint
from colorjax.config import ExperimentConfig
from colorjax.errors import ConfigError, TrainingDivergedError
from colorjax.fileio import atomic_write_text, ensure_output_dir
from colorjax.parallel import (
    check_batch_divisible,
    global_batch_from_local,
    is_main_process,
    make_mesh,
)
from colorjax.train.state import TrainState, abstract_state, create_state, make_task
from colorjax.train.steps import make_eval_step, make_train_step

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RUN_INFO_FILE = "run.json"  # command, hardware, wall time: what `weights export` records


def hardware_description() -> str:
    """One line naming the devices and host a run used (for the weights manifest)."""
    import os
    import platform

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


@dataclasses.dataclass
class TrainResult:
    """What a finished run leaves behind."""

    state: TrainState
    step: int
    last_metrics: dict[str, float]
    eval_metrics: dict[str, float] | None


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


def _data_loader(config: ExperimentConfig, *, eval_: bool, per_process: int) -> Any:
    """Make this process's loader for the training or evaluation split."""
    from colorjax.data import make_loader, make_source

    d = config.data
    source = make_source(
        (d.eval_source or d.source) if eval_ else d.source,
        split=d.eval_split if eval_ else d.split,
        data_dir=d.data_dir,
        val_fraction=d.val_fraction,
        seed=config.train.seed,
    )
    return make_loader(
        source,
        batch_size=per_process,
        image_size=d.image_size,
        train=not eval_,
        seed=config.train.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_workers=0 if eval_ else d.num_workers,
        drop_gray_threshold=None if eval_ else d.drop_gray_threshold,
        num_epochs=None,
    )


def _eval_batches(config: ExperimentConfig, mesh: Mesh) -> list[Any]:
    """A fixed validation set: the first `eval_batches` global batches of the eval split."""
    t = config.train
    per_process = check_batch_divisible(t.eval_batch_size, mesh, "train.eval_batch_size")
    loader = _data_loader(config, eval_=True, per_process=per_process)
    try:
        return [global_batch_from_local(next(loader), mesh) for _ in range(t.eval_batches)]
    finally:
        close = getattr(loader, "close", None)
        if close is not None:
            close()


def _incompatible_fields(a: ExperimentConfig, b: ExperimentConfig) -> list[str]:
    """Fields that stop a checkpoint of `a` continuing as `b` (they change the state's shapes)."""
    checks = {
        "model.name": (a.model.name, b.model.name),
        "model.overrides": (a.model.overrides, b.model.overrides),
        "data.image_size": (a.data.image_size, b.data.image_size),
        "optim.optimizer": (a.optim.optimizer, b.optim.optimizer),
        # Only on/off matters: the value of the decay or the clip norm does not change shapes.
        "optim.ema_decay": (a.optim.ema_decay is None, b.optim.ema_decay is None),
        "optim.grad_clip_norm": (bool(a.optim.grad_clip_norm), bool(b.optim.grad_clip_norm)),
    }
    shown = {
        "optim.ema_decay": (a.optim.ema_decay, b.optim.ema_decay),
        "optim.grad_clip_norm": (a.optim.grad_clip_norm, b.optim.grad_clip_norm),
    }
    return [
        f"{key} {shown.get(key, pair)[0]!r} -> {shown.get(key, pair)[1]!r}"
        for key, pair in checks.items()
        if pair[0] != pair[1]
    ]


def train(
    config: ExperimentConfig,
    workdir: str | Path,
    *,
    resume: bool = True,
    mesh: Mesh | None = None,
    on_step: Callable[[int], None] | None = None,
    command: str | None = None,
) -> TrainResult:
    """Train to config.train.steps, resuming from DIR/checkpoints when allowed and present.

    `command` (the command line) is recorded in WORKDIR/run.json for `weights export`.
    """
    workdir = Path(workdir).absolute()
    t = config.train
    if config.optim.warmup_steps > t.steps:
        logger.warning(
            "train.steps=%d is below optim.warmup_steps=%d: the learning rate never reaches "
            "optim.learning_rate; lower optim.warmup_steps or raise train.steps",
            t.steps,
            config.optim.warmup_steps,
        )
    mesh = mesh if mesh is not None else make_mesh()
    # Fail on an impossible batch split before anything is compiled or loaded.
    per_process = check_batch_divisible(t.batch_size, mesh)
    main = is_main_process()
    existing = has_checkpoint(workdir)
    if existing and not resume:
        raise ConfigError(
            f"{workdir} already holds checkpoints and --no-resume was given; pass a new --workdir "
            "or drop --no-resume to continue that run"
        )
    ensure_output_dir(workdir, "--workdir")
    task = make_task(config)
    store = CheckpointStore(
        workdir, keep=t.keep, keep_best=t.keep_best, async_save=t.async_checkpoint
    )
    loader = None
    try:
        loader = _data_loader(config, eval_=False, per_process=per_process)
        start = 0
        if existing:
            saved = store.read_config()
            differ = _incompatible_fields(saved, config)
            if differ:
                raise ConfigError(
                    f"cannot resume {workdir}: its checkpoint was saved with other "
                    f"{', '.join(differ)} (checkpoint -> this config), which changes the saved "
                    "state; use a new --workdir or set those fields back"
                )
            state, data_state, _ = store.restore(None, abstract_state(task, mesh))
            if data_state is not None:
                loader.set_state(data_state)
            start = int(state.step)
            if start > t.steps:
                raise ConfigError(
                    f"the checkpoint in {workdir} is at step {start}, past train.steps={t.steps}; "
                    f"to train further pass --set train.steps=N with N > {start}, or use the run "
                    "as it is (colorjax eval / weights export)"
                )
            logger.info("resumed %s at step %d", workdir, start)
        else:
            state = create_state(task, mesh)
        if main and start < t.steps:
            # A finished run re-run as is trains nothing, so its config.json stays as it was.
            atomic_write_text(workdir / CONFIG_FILE, config.to_json() + "\n")
        writer = MetricsWriter(workdir / METRICS_FILE, main, start if existing else None)
        run_info = RunInfo(workdir, command, main and start < t.steps, existing)
        eval_data = _eval_batches(config, mesh) if t.eval_every > 0 else None
        train_step = make_train_step(task, mesh)
        eval_step = make_eval_step(task, mesh) if eval_data is not None else None
        return _run(
            config,
            state,
            start,
            loader,
            train_step,
            eval_step,
            eval_data,
            store,
            writer,
            mesh,
            main,
            on_step,
            run_info,
        )
    finally:
        if loader is not None and hasattr(loader, "close"):
            loader.close()
        store.close()


def _run(
    config: ExperimentConfig,
    state: TrainState,
    start: int,
    loader: Any,
    train_step: Callable,
    eval_step: Callable | None,
    eval_data: list[Any] | None,
    store: CheckpointStore,
    writer: MetricsWriter,
    mesh: Mesh,
    main: bool,
    on_step: Callable[[int], None] | None,
    run_info: RunInfo,
) -> TrainResult:
    """The step loop; metrics are fetched one step late so the host never stalls the device."""
    t = config.train
    total = t.steps
    bar = tqdm(
        total=total,
        initial=start,
        disable=not (main and t.progress),
        unit="step",
        dynamic_ncols=True,
    )
    last: dict[str, float] = {}
    last_eval: dict[str, float] | None = None
    pending: tuple[int, Any] | None = None
    clock = {"time": time.perf_counter(), "step": start}

    def record(step: int, metrics: Any) -> None:
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(values["loss"]):
            raise TrainingDivergedError(
                f"loss became {values['loss']} at step {step}; stopped without saving, the last "
                f"good checkpoint (step {store.latest_step()}) is intact. Lower "
                "optim.learning_rate or set optim.grad_clip_norm and resume"
            )
        last.clear()
        last.update(values)
        bar.update(step - bar.n)
        if step % t.log_every == 0 or step == total:
            now = time.perf_counter()
            done = step - clock["step"]
            ips = done * t.batch_size / max(now - clock["time"], 1e-9)
            clock.update(time=now, step=step)
            bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{ips:.1f}")
            writer.write(
                {
                    "step": step,
                    "kind": "train",
                    **values,
                    "images_per_sec": ips,
                    "time": time.time(),
                }
            )

    def evaluate(step: int) -> dict[str, float]:
        sums: dict[str, float] = {}
        for batch in eval_data:
            for k, v in jax.device_get(eval_step(state, batch)).items():
                sums[k] = sums.get(k, 0.0) + float(v)
        out = {k: v / len(eval_data) for k, v in sums.items()}
        out["colorfulness_diff"] = out["colorfulness_pred"] - out["colorfulness_true"]
        writer.write({"step": step, "kind": "eval", **out, "time": time.time()})
        if main:
            logger.info(
                "step %d eval: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in sorted(out.items()))
            )
        return out

    try:
        step = start
        while step < total:
            batch = next(loader)
            data_state = loader.get_state()  # position after this batch: what a resume needs
            state, metrics = train_step(state, global_batch_from_local(batch, mesh))
            step += 1
            if pending is not None:
                record(*pending)
            pending = (step, metrics)
            do_eval = eval_step is not None and (step % t.eval_every == 0 or step == total)
            do_save = step % t.checkpoint_every == 0 or step == total
            if do_eval or do_save or step % t.log_every == 0:
                record(*pending)
                pending = None
            eval_now = evaluate(step) if do_eval else None
            if eval_now is not None:
                last_eval = eval_now
            if do_save:
                store.save(step, state, data_state, config, metrics=eval_now)
                run_info.write(step)
            if on_step is not None:
                on_step(step)
        if pending is not None:
            record(*pending)
        store.wait()
    finally:
        bar.close()
    return TrainResult(
        state=state, step=int(state.step), last_metrics=dict(last), eval_metrics=last_eval
    )
