"""Shared test set-up: JAX subprocesses with N fake CPU devices, and the training worker script."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# The CLI keeps compiled programs in a persistent cache; tests call it in-process with many
# temporary COLORJAX_HOMEs, so it stays off here (tests/test_faults_pass2.py turns it on in
# subprocesses to test it).
os.environ["COLORJAX_COMPILE_CACHE"] = "0"


def fake_device_env(devices: int) -> dict[str, str]:
    """Environment for a JAX subprocess with `devices` fake CPU devices.

    The device count is fixed when JAX starts, so it is set for a fresh process, never in
    this one; PYTHONPATH lets the subprocess import colorjax and the tests' helpers.
    """
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS)])
    return env


@pytest.fixture
def worker_env() -> Callable[[int], dict[str, str]]:
    """`worker_env(n)`: the environment of a JAX subprocess with n fake CPU devices."""
    return fake_device_env


@pytest.fixture
def train_worker() -> Path:
    """The subprocess script of the training tests (tests/_train_worker.py)."""
    return TESTS / "_train_worker.py"


def _slow_ids() -> set[str]:
    """Node ids (without parameters) listed in tests/slow_tests.txt."""
    lines = (TESTS / "slow_tests.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001 - pytest's hook
    """Mark the measured-slow tests `slow`; the default run (setup.cfg) leaves them out."""
    slow = _slow_ids()
    for item in items:
        if item.nodeid.split("[", 1)[0] in slow:
            item.add_marker(pytest.mark.slow)
