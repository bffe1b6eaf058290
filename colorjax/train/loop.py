"""The training loop: `train_and_evaluate(config, workdir)`, one function in big_vision sections.

mesh -> model -> checkpoint -> input -> shard (create or resume) -> records -> update -> evals
-> loop. Every periodic action (log, eval, checkpoint, the save after the last step) asks one
rule, `records.due(step, every, total)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.sharding import Mesh

from colorjax.checkpoint import CheckpointStore, has_checkpoint
from colorjax.config import ExperimentConfig, incompatible_fields, trajectory_changes
from colorjax.errors import ConfigError, TrainingDivergedError, TrainingStopped
from colorjax.fileio import atomic_write_text, ensure_output_dir
from colorjax.parallel import (
    check_batch_divisible,
    global_batch_from_local,
    is_main_process,
    make_mesh,
)
from colorjax.train.inputs import eval_batches, make_data_loader
from colorjax.train.preempt import StopRequests
from colorjax.train.run import (
    CONFIG_FILE,
    METRICS_FILE,
    MetricsWriter,
    Reporter,
    RunInfo,
    WorkdirLock,
    due,
)
from colorjax.train.state import TrainState, TrainTask, abstract_state, create_state, make_task
from colorjax.train.steps import make_eval_step, make_train_step

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What a finished run leaves behind."""

    state: TrainState
    step: int
    last_metrics: dict[str, float]
    eval_metrics: dict[str, float] | None


def train_and_evaluate(
    config: ExperimentConfig,
    workdir: str | Path,
    *,
    resume: bool = True,
    mesh: Mesh | None = None,
    on_step: Callable[[int], None] | None = None,
    command: str | None = None,
    allow_config_change: bool = False,
) -> TrainResult:
    """Train to config.train.steps, resuming from WORKDIR/checkpoints when allowed and present.

    `on_step(step)` runs after each update (tests use it to stop a run mid-way); `command`
    (the command line) is recorded in WORKDIR/run.json for `weights export`. A resumed run
    whose config changes its updates (batch size, learning rate, data...) is refused unless
    `allow_config_change`. SIGTERM or SIGINT ends the run after the current step with a
    checkpoint and raises TrainingStopped; the same call resumes it exactly.
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

    # ------------------------------------------------------------------------------------- mesh
    mesh = mesh if mesh is not None else make_mesh()
    # An impossible batch split fails here, before anything is compiled or loaded.
    per_process = check_batch_divisible(t.batch_size, mesh)
    main = is_main_process()
    ensure_output_dir(workdir, "--workdir")

    # ------------------------------------------------------------------------------------ model
    task = make_task(config, mesh=mesh)

    with contextlib.ExitStack() as cleanup:
        # Held until the run ends: a second training in this work dir is refused by name.
        cleanup.enter_context(WorkdirLock(workdir, main))
        resuming = has_checkpoint(workdir)
        if resuming and not resume:
            raise ConfigError(
                f"{workdir} already holds checkpoints and --no-resume was given; pass a new "
                "--workdir or drop --no-resume to continue that run"
            )
        # --------------------------------------------------------------------------- checkpoint
        store = CheckpointStore(
            workdir, keep=t.keep, keep_best=t.keep_best, async_save=t.async_checkpoint
        )
        cleanup.callback(store.close)  # runs last: it waits for the final async save

        # -------------------------------------------------------------------------------- input
        loader = make_data_loader(config, train=True, per_process=per_process)
        cleanup.callback(loader.close)

        # -------------------------------------------------------------------------------- shard
        # The state lives replicated on the mesh; batches are sharded over its data axis.
        if resuming:
            state, data_state = _resume(store, task, mesh, workdir, allow_config_change)
            if data_state is not None:
                loader.set_state(data_state)
        else:
            state = create_state(task, mesh)
        start = int(state.step)
        if resuming:
            logger.info("resumed %s at step %d", workdir, start)

        # ------------------------------------------------------------------------------ records
        if main and start < t.steps:
            # A finished run re-run as is trains nothing, so its config.json stays as it was.
            atomic_write_text(workdir / CONFIG_FILE, config.to_json() + "\n")
        writer = MetricsWriter(workdir / METRICS_FILE, main, start if resuming else None)
        run_info = RunInfo(workdir, command, main and start < t.steps, resuming)
        report = Reporter(
            writer,
            start=start,
            total=t.steps,
            log_every=t.log_every,
            batch_size=t.batch_size,
            show=main and t.progress,
        )
        cleanup.callback(report.close)

        # ------------------------------------------------------------------------------- update
        train_step = make_train_step(task, mesh)

        # -------------------------------------------------------------------------------- evals
        # eval_every=0 turns evaluation off: no eval data is read and nothing compiled.
        eval_data = eval_batches(config, mesh) if t.eval_every > 0 else None
        eval_step = make_eval_step(task, mesh) if eval_data is not None else None

        # --------------------------------------------------------------------------------- loop
        last_train: dict[str, float] = {}
        last_eval: dict[str, float] | None = None
        # Metrics are read one step late, so the host queues step N+1 before waiting on N.
        pending: tuple[int, Any] | None = None
        stop = cleanup.enter_context(StopRequests())
        for step in range(start + 1, t.steps + 1):
            batch = next(loader)
            data_state = loader.get_state()  # the position after this batch: what resume needs
            state, metrics = train_step(state, global_batch_from_local(batch, mesh))
            if pending is not None:
                last_train = report.train(*_fetch(*pending, store))
            pending = (step, metrics)
            evaluate_now = eval_step is not None and due(step, t.eval_every, t.steps)
            save_now = due(step, t.checkpoint_every, t.steps)
            if evaluate_now or save_now or due(step, t.log_every, t.steps):
                last_train = report.train(*_fetch(*pending, store))
                pending = None
            step_eval = None
            if evaluate_now:
                step_eval = last_eval = report.eval(step, _evaluate(eval_step, state, eval_data))
            if save_now:
                # The best-checkpoint policy ranks the saves that carry an eval.
                store.save(step, state, data_state, config, metrics=step_eval)
                run_info.write(step)
            if on_step is not None:
                on_step(step)
            signum = stop.agreed()
            if signum is not None and step < t.steps:
                if not save_now:
                    if pending is not None:  # a diverged step must not be saved
                        last_train = report.train(*_fetch(*pending, store))
                    store.save(step, state, data_state, config)
                    run_info.write(step)
                store.wait()
                raise TrainingStopped(
                    f"{signal.Signals(signum).name} after step {step}; checkpoint saved in "
                    f"{workdir}. Run the same command to resume from step {step}",
                    signum,
                )
        if pending is not None:  # only when log_every <= 0: train.steps is otherwise always due
            last_train = report.train(*_fetch(*pending, store))
        store.wait()
    return TrainResult(
        state=state, step=int(state.step), last_metrics=last_train, eval_metrics=last_eval
    )


# The name the demo and the tests have always called.
train = train_and_evaluate


def _resume(
    store: CheckpointStore, task: TrainTask, mesh: Mesh, workdir: Path, allow_change: bool
) -> tuple[TrainState, Any]:
    """The latest checkpoint's state and this process's data position, after checking the run."""
    config = task.config
    saved = store.read_config()
    differ = incompatible_fields(saved, config)
    if differ:
        raise ConfigError(
            f"cannot resume {workdir}: its checkpoint was saved with other {', '.join(differ)} "
            "(checkpoint -> this config), which changes the saved state; use a new --workdir or "
            "set those fields back"
        )
    changed = trajectory_changes(saved, config)
    if changed and not allow_change:
        raise ConfigError(
            f"resuming {workdir} with {', '.join(changed)} (checkpoint -> this config) would "
            "not continue the run exactly; set them back, or pass --allow-config-change to "
            "continue with the new values"
        )
    if changed:
        logger.warning("resuming %s with changed %s", workdir, ", ".join(changed))
    state, data_state, _ = store.restore(None, abstract_state(task, mesh))
    step, total = int(state.step), config.train.steps
    if step > total:
        raise ConfigError(
            f"the checkpoint in {workdir} is at step {step}, past train.steps={total}; to train "
            f"further pass --set train.steps=N with N > {step}, or use the run as it is "
            "(colorjax eval / weights export)"
        )
    return state, data_state


def _fetch(step: int, metrics: Any, store: CheckpointStore) -> tuple[int, dict[str, float]]:
    """(step, metrics on the host); a non-finite loss stops the run before anything is saved."""
    values = {key: float(value) for key, value in jax.device_get(metrics).items()}
    if not math.isfinite(values["loss"]):
        raise TrainingDivergedError(
            f"loss became {values['loss']} at step {step}; stopped without saving, the last "
            f"good checkpoint (step {store.latest_step()}) is intact. Lower "
            "optim.learning_rate or set optim.grad_clip_norm and resume"
        )
    return step, values


def _evaluate(eval_step: Callable, state: TrainState, batches: list[Any]) -> dict[str, float]:
    """Mean eval metrics over the fixed batches, plus the colourfulness gap (pred - true)."""
    sums: dict[str, float] = {}
    for batch in batches:
        for key, value in jax.device_get(eval_step(state, batch)).items():
            sums[key] = sums.get(key, 0.0) + float(value)
    out = {key: value / len(batches) for key, value in sums.items()}
    out["colorfulness_diff"] = out["colorfulness_pred"] - out["colorfulness_true"]
    return out
