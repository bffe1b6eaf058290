"""Checkpoints: kill -9 and resume is exact; NaN stops the run and spares the last good one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _train_worker import flat_params

from colorjax.checkpoint import CheckpointStore, has_checkpoint, tree_is_finite
from colorjax.config import ExperimentConfig
from colorjax.errors import ConfigError, TrainingDivergedError
from colorjax.parallel import make_mesh
from colorjax.train.loop import train
from colorjax.train.run import load_inference_params
from colorjax.train.state import abstract_state, make_task


def _config(steps: int) -> ExperimentConfig:
    c = ExperimentConfig()
    c.model.name = "colornet-tiny"
    c.data.source = "embedded"
    c.data.image_size = 32
    c.optim.learning_rate = 1e-3
    c.optim.ema_decay = 0.9
    c.train.batch_size = 4
    c.train.steps = steps
    c.train.checkpoint_every = 2
    c.train.log_every = 1
    c.train.eval_every = 0
    c.train.keep = 5
    c.train.progress = False
    return c


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"worker exited with {proc.returncode} before {path}"
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.5)


@pytest.mark.multiprocess
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, train_worker, worker_env):
    config = _config(steps=6)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(config.to_json())
    workdir = tmp_path / "run"
    env = worker_env(1)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(train_worker),
            "train",
            str(cfg_path),
            str(workdir),
            str(tmp_path / "ignored.npz"),
            "5",
        ],
        env=env,
    )
    try:
        _wait_for(workdir / "HUNG", proc)
        _wait_for(workdir / "checkpoints" / "4", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (workdir / "checkpoints" / "6").exists()
    subprocess.run(
        [
            sys.executable,
            str(train_worker),
            "train",
            str(cfg_path),
            str(workdir),
            str(tmp_path / "resumed.npz"),
        ],
        env=env,
        check=True,
        timeout=900,
    )
    resumed = np.load(tmp_path / "resumed.npz")
    reference = train(config, tmp_path / "reference", mesh=make_mesh(1))
    assert reference.step == 6
    want = flat_params(reference.state.params)
    assert sorted(resumed.files) == sorted(want)
    # Same compiled step, same inputs, same data position: bit-for-bit identical.
    for key, value in want.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    # The metrics file has exactly one record per step despite the crash.
    import json

    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ConfigError, match="no-resume"):
        train(config, workdir, resume=False)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    config = _config(steps=8)
    config.train.inject_nan_step = 4  # the 5th update (state.step == 4) produces NaN
    config.train.async_checkpoint = True
    workdir = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="step 5"):
        train(config, workdir, mesh=make_mesh(1))
    assert has_checkpoint(workdir)
    store = CheckpointStore(workdir, async_save=False)
    try:
        assert store.all_steps() == [2, 4]
        state, data_state, saved = store.restore(
            None, abstract_state(make_task(config), make_mesh(1))
        )
        assert int(state.step) == 4 and bool(tree_is_finite(state.params))
        assert data_state is not None and saved == config
        # Saving non-finite parameters is refused, so no NaN checkpoint can replace a good one.
        bad = state.replace(params=jax_tree_nan(state.params))
        with pytest.raises(TrainingDivergedError, match="not finite"):
            store.save(6, bad, data_state, config)
        assert store.all_steps() == [2, 4]
    finally:
        store.close()
    # The exported inference params are the finite (debiased) EMA weights of step 4.
    cfg, variables = load_inference_params(workdir)
    assert cfg == config
    from colorjax.train.state import debiased_ema

    ema = flat_params(debiased_ema(make_task(config), state))
    got = flat_params(variables["params"])
    assert sorted(got) == sorted(ema)
    for key, value in ema.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def jax_tree_nan(tree):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda x: x * jnp.nan, tree)
