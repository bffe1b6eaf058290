"""Two JAX processes on 127.0.0.1 (gloo, 2 fake devices each) train like one process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from _train_worker import flat_params, run_steps, tiny_config

from colorjax.parallel import make_mesh


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, train_worker, envs, port) -> Path:
    """Start one worker per environment, wait, return the shared work dir."""
    workdir = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(train_worker),
                "multihost",
                str(pid),
                str(len(envs)),
                str(port),
                str(workdir),
                str(tmp_path / f"p{pid}.npz"),
            ],
            env=env,
        )
        for pid, env in enumerate(envs)
    ]
    try:
        codes = [p.wait(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0]
    return workdir


def _check_like_one_process(tmp_path, workdir):
    """Both processes' params equal one process's; process 0 is the main one. (task, state)."""
    infos = [json.loads((tmp_path / f"p{pid}.json").read_text()) for pid in range(2)]
    assert [i["main"] for i in infos] == [True, False]  # only process 0 is the main one
    # Reference: one process, one device, the same global batches.
    task, state, losses = run_steps(tiny_config(), make_mesh(1), 3)
    want = flat_params(state.params)
    np.testing.assert_allclose(infos[0]["losses"], losses, rtol=1e-5, atol=1e-6)
    for pid in range(2):
        got = np.load(tmp_path / f"p{pid}.npz")
        assert sorted(got.files) == sorted(want)
        for key, value in want.items():
            # Adam divides each gradient by its own RMS, so a near-zero gradient's summation-order
            # noise (4-device all-reduce vs one device) grows to ~lr * 1e-2 in that weight:
            # one of 9,216 elements was seen 1.02e-5 off after 3 steps.
            np.testing.assert_allclose(got[key], value, atol=3e-5, rtol=1e-5, err_msg=key)
    return task, state


def _slurm_env(base: dict, pid: int, port: int) -> dict:
    """What srun sets for task `pid` of a 2-task step on one node (127.0.0.1)."""
    return {
        **base,
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NODELIST": "127.0.0.1",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(pid),
        "SLURM_LOCALID": "0",  # one task per (simulated) node
        "SLURM_STEP_NUM_NODES": "2",
        "JAX_COORDINATOR_PORT": str(port),
    }


def _ompi_env(base: dict, pid: int, port: int) -> dict:
    """What mpirun sets for rank `pid` of 2 (the launcher's URI names the coordinator host)."""
    return {
        **base,
        "OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://127.0.0.1:34911",
        "OMPI_COMM_WORLD_SIZE": "2",
        "OMPI_COMM_WORLD_RANK": str(pid),
        "OMPI_COMM_WORLD_LOCAL_RANK": "0",
        "JAX_COORDINATOR_PORT": str(port),
    }


@pytest.mark.multiprocess
@pytest.mark.parametrize("launcher", [_slurm_env, _ompi_env], ids=["slurm", "open-mpi"])
def test_processes_launched_by_a_cluster_join_one_run_without_flags(
    launcher, tmp_path, train_worker, worker_env
):
    port = _free_port()
    envs = [launcher(worker_env(2), pid, port) for pid in range(2)]
    workdir = _launch(tmp_path, train_worker, envs, 0)
    _check_like_one_process(tmp_path, workdir)


def test_a_launch_jax_cannot_join_is_refused_not_run_n_times(monkeypatch):
    from colorjax.errors import ConfigError
    from colorjax.parallel import maybe_initialize_distributed

    for var in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "OMPI_MCA_orte_hnp_uri"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")  # srun-like, but the node list is missing
    with pytest.raises(ConfigError, match="SLURM_NTASKS=4 says this is one of 4 processes"):
        maybe_initialize_distributed()
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert maybe_initialize_distributed() is False


@pytest.mark.multiprocess
def test_two_processes_match_one_and_their_checkpoint_restores(tmp_path, train_worker, worker_env):
    from colorjax.checkpoint import CheckpointStore
    from colorjax.train.state import abstract_state

    workdir = _launch(tmp_path, train_worker, [worker_env(2)] * 2, _free_port())
    task, state = _check_like_one_process(tmp_path, workdir)

    # The checkpoint the cluster wrote restores in this single process.
    store = CheckpointStore(workdir, async_save=False)
    try:
        assert store.latest_step() == 3
        restored, data_state, config = store.restore(None, abstract_state(task, make_mesh(1)))
    finally:
        store.close()
    assert config == tiny_config()
    assert data_state is None  # written by 2 processes: positions do not map onto 1
    assert int(restored.step) == 3
    p0 = np.load(tmp_path / "p0.npz")
    for key, value in flat_params(restored.params).items():
        np.testing.assert_array_equal(value, p0[key], err_msg=key)
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)


@pytest.mark.multiprocess
def test_sigterm_to_one_process_stops_every_process_after_the_same_step(
    tmp_path, train_worker, worker_env
):
    import signal
    import time

    from colorjax.checkpoint import checkpoint_steps
    from colorjax.config import ExperimentConfig

    c = ExperimentConfig()
    c.model.name = "colornet-tiny"
    c.data.source = "embedded"
    c.data.image_size = 32
    c.train.batch_size = 4  # 2 processes x 2 devices
    c.train.steps = 100_000
    c.train.log_every = 1
    c.train.checkpoint_every = 10_000
    c.train.eval_every = 0
    c.train.progress = False
    config = tmp_path / "c.json"
    config.write_text(c.to_json())
    workdir, port = tmp_path / "run", _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(train_worker),
                "stoppable",
                str(pid),
                "2",
                str(port),
                str(config),
                str(workdir),
                str(tmp_path / f"out{pid}.json"),
            ],
            env=worker_env(2),
        )
        for pid in range(2)
    ]
    try:
        metrics, deadline = workdir / "metrics.jsonl", time.monotonic() + 600
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
            assert all(p.poll() is None for p in procs) and time.monotonic() < deadline
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGTERM)  # the scheduler preempts one host only
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0]
    outs = [json.loads((tmp_path / f"out{pid}.json").read_text()) for pid in range(2)]
    steps = [int(o["stopped"].split("after step ")[1].split(";")[0]) for o in outs]
    assert steps[0] == steps[1] >= 3, outs  # both stopped after the same step ...
    assert checkpoint_steps(workdir)[-1] == steps[0]  # ... and saved it together
