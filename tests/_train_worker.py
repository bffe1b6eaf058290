"""Subprocess helper for the training tests (device flags must be set before JAX starts).

Modes:
  devices OUT.json                one step on 8 vs 1 devices; sharding errors
  multihost PID NPROC PORT WORKDIR OUT.npz   (PORT 0: join the cluster the environment names)
  stoppable PID NPROC PORT CONFIG.json WORKDIR OUT.json   (the loop, until SIGTERM)
                                  3 steps in a 2-process cluster, checkpoint, params to OUT
  train CONFIG.json WORKDIR OUT.npz [HANG_AFTER]
                                  run the training loop; optionally hang after a step
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np


def tiny_config(**train_overrides):
    """The small config shared by the subprocess tests and their in-process references."""
    from colorjax.config import ExperimentConfig

    c = ExperimentConfig()
    c.model.name = "colornet-tiny"
    c.data.image_size = 32
    # SGD: Adam's g/sqrt(v) amplifies float reassociation noise where |g| ~ eps, which
    # would make cross-device comparisons test Adam rather than the sharding.
    c.optim.optimizer = "sgd"
    c.optim.learning_rate = 0.05
    c.optim.b1 = 0.9
    c.optim.schedule = "constant"
    c.train.batch_size = 8
    c.train.steps = 3
    c.train.progress = False
    for key, value in train_overrides.items():
        setattr(c.train, key, value)
    return c


def global_batch(step: int, batch: int = 8, size: int = 32) -> np.ndarray:
    """Deterministic uint8 RGB batch for a step."""
    return np.random.default_rng(1000 + step).integers(0, 256, (batch, size, size, 3), np.uint8)


def flat_params(tree) -> dict[str, np.ndarray]:
    """Flatten a params pytree to {path: host array} (replicated arrays: local copy)."""
    import jax

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        arr = leaf.addressable_data(0) if hasattr(leaf, "addressable_data") else leaf
        out[jax.tree_util.keystr(path)] = np.asarray(arr)
    return out


def run_steps(config, mesh, steps: int, local_slice=slice(None)):
    """Train `steps` steps on the deterministic batches; returns (state, losses)."""
    from colorjax.parallel import global_batch_from_local
    from colorjax.train.state import create_state, make_task
    from colorjax.train.steps import make_train_step

    task = make_task(config, mesh=mesh)
    state = create_state(task, mesh)
    step_fn = make_train_step(task, mesh)
    losses = []
    for i in range(steps):
        local = {"rgb": global_batch(i, config.train.batch_size)[local_slice]}
        state, metrics = step_fn(state, global_batch_from_local(local, mesh))
        losses.append(float(metrics["loss"]))
    return task, state, losses


def count_all_gathers(compiled_text: str) -> int:
    """Number of all-gather ops (sync or async) in an optimized HLO text."""
    return len(re.findall(r"\ball-gather(?:-start)?\(", compiled_text))


def step_all_gathers(config, mesh) -> int:
    """All-gathers in the compiled train step on `mesh` (data parallelism needs none)."""
    from colorjax.parallel import global_batch_from_local
    from colorjax.train.state import create_state, make_task
    from colorjax.train.steps import make_train_step

    task = make_task(config, mesh=mesh)
    batch = global_batch_from_local({"rgb": global_batch(0, config.train.batch_size)}, mesh)
    lowered = make_train_step(task, mesh).lower(create_state(task, mesh), batch)
    return count_all_gathers(lowered.compile().as_text())


def sharded_loops(mesh) -> dict:
    """The CPU per-sample loops (kernel gradients) on a sharded batch: value vs one device, and
    the all-gathers in the compiled loop."""
    import jax

    from colorjax.models.cpu.conv import kernel_grad_per_sample
    from colorjax.models.cpu.conv4x4 import tap_grams as cpu_tap_grams
    from colorjax.parallel import data_sharding, replicated

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 9, 9, 3)).astype(np.float32)
    dy = rng.normal(size=(8, 9, 9, 4)).astype(np.float32)

    def kernel_grad(x, dy, mesh=None):
        return kernel_grad_per_sample(x, dy, (3, 3), ((1, 1), (1, 1)), mesh=mesh)

    def tap_grams(x, dy, mesh=None):
        return cpu_tap_grams(x, dy[:, :8, :8], [(0, 0), (1, 0), (1, 1)], mesh)

    out = {}
    for name, fn in (("kernel_grad", kernel_grad), ("tap_grams", tap_grams)):
        sharded = jax.jit(
            lambda x, dy, fn=fn: fn(x, dy, mesh),
            in_shardings=(data_sharding(mesh), data_sharding(mesh)),
            out_shardings=replicated(mesh),
        )
        got = np.asarray(sharded(x, dy))
        want = np.asarray(jax.jit(fn)(x, dy))
        out[name] = {
            "max_abs_diff": float(np.abs(got - want).max()),
            "scale": float(np.abs(want).max()),
            "all_gathers": count_all_gathers(sharded.lower(x, dy).compile().as_text()),
        }
    return out


def mode_devices(out: str) -> None:
    """One step on 8 and on 1 device; ShardingError messages; results to OUT."""

    import jax

    from colorjax.errors import ShardingError
    from colorjax.parallel import check_batch_divisible, make_mesh
    from colorjax.train import loop

    assert jax.device_count() == 8, jax.devices()
    config = tiny_config()
    result = {}
    for n in (8, 1):
        _, state, losses = run_steps(config, make_mesh(n), 1)
        result[f"loss_{n}"] = losses[0]
        np.savez(Path(out).with_suffix(f".{n}.npz"), **flat_params(state.params))
    result["step_all_gathers"] = step_all_gathers(config, make_mesh(8))
    result["loops"] = sharded_loops(make_mesh(8))
    try:
        check_batch_divisible(12, make_mesh(8))
        result["check_error"] = None
    except ShardingError as err:
        result["check_error"] = str(err)

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before the batch check")

    loop.make_train_step = no_compile
    loop.make_task = no_compile
    bad = tiny_config(batch_size=12)
    try:
        loop.train(bad, Path(out).parent / "bad_workdir")
        result["train_error"] = None
    except ShardingError as err:
        result["train_error"] = str(err)
    Path(out).write_text(json.dumps(result))


def mode_multihost(pid: int, nproc: int, port: int, workdir: str, out: str) -> None:
    """Join a local cluster, train 3 steps on this process's slice, checkpoint.

    PORT 0 gives no flags: the process joins whatever cluster its environment describes
    (SLURM or Open MPI variables set by the test), as `colorjax train` does.
    """

    from colorjax.parallel import is_main_process, make_mesh, maybe_initialize_distributed

    if port:
        maybe_initialize_distributed(f"127.0.0.1:{port}", nproc, pid)
    else:
        maybe_initialize_distributed()
    import jax

    pid = jax.process_index()
    from colorjax.checkpoint import CheckpointStore

    assert jax.process_count() == nproc and jax.local_device_count() == 2
    config = tiny_config()
    per = config.train.batch_size // nproc
    _, state, losses = run_steps(config, make_mesh(), 3, slice(pid * per, (pid + 1) * per))
    store = CheckpointStore(workdir, keep=2, keep_best=False)
    store.save(3, state, {"process": pid}, config)
    store.close()
    np.savez(out, **flat_params(state.params))
    Path(out).with_suffix(".json").write_text(
        json.dumps({"losses": losses, "main": is_main_process()})
    )


def mode_stoppable(pid: int, nproc: int, port: int, config_path: str, workdir: str, out: str):
    """Join a local cluster and run the real training loop until a signal stops it."""

    from colorjax.parallel import maybe_initialize_distributed

    maybe_initialize_distributed(f"127.0.0.1:{port}", nproc, pid)
    from colorjax.config import ExperimentConfig
    from colorjax.errors import TrainingStopped
    from colorjax.train.loop import train

    config = ExperimentConfig.from_dict(json.loads(Path(config_path).read_text()))
    try:
        result = train(config, workdir)
        record = {"finished": result.step}
    except TrainingStopped as err:
        record = {"stopped": str(err), "signum": err.signum}
    Path(out).write_text(json.dumps(record))


def mode_train(config_path: str, workdir: str, out: str, hang_after: int | None) -> None:
    """Run the training loop; with hang_after, stop making progress after that step."""

    from colorjax.config import ExperimentConfig
    from colorjax.train.loop import train

    config = ExperimentConfig.from_dict(json.loads(Path(config_path).read_text()))

    def on_step(step: int) -> None:
        if hang_after is not None and step >= hang_after:
            Path(workdir, "HUNG").write_text(str(step))
            while True:  # wait for kill -9, like a machine that loses power
                time.sleep(1)

    result = train(config, workdir, on_step=on_step)
    np.savez(out, **flat_params(result.state.params))


def main(argv: list[str]) -> None:
    """Dispatch on the mode name."""

    mode = argv[0]
    if mode == "devices":
        mode_devices(argv[1])
    elif mode == "multihost":
        mode_multihost(int(argv[1]), int(argv[2]), int(argv[3]), argv[4], argv[5])
    elif mode == "stoppable":
        mode_stoppable(int(argv[1]), int(argv[2]), int(argv[3]), argv[4], argv[5], argv[6])
    elif mode == "train":
        mode_train(argv[1], argv[2], argv[3], int(argv[4]) if len(argv) > 4 else None)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
