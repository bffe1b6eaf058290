"""colorjax on a machine without Grain, ArrayRecord, portpicker and TFDS (e.g. the GPU box).

Each test runs a fresh interpreter whose sitecustomize blocks those packages with a
sys.meta_path finder, so an import of any of them fails as if it were not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorjax.checkpoint import has_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("grain", "tensorflow_datasets", "array_record", "portpicker")

SITECUSTOMIZE = f"""
import importlib.abc
import sys

BLOCKED = {BLOCKED!r}


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        return None


sys.meta_path.insert(0, _Block())
"""


def _env(tmp_path: Path, block: bool) -> dict[str, str]:
    """Environment for a child interpreter: the checkout importable, optionally the blocker."""
    paths = [str(ROOT)]
    if block:
        site = tmp_path / "blocker"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        paths.insert(0, str(site))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _run(tmp_path: Path, args: list[str], block: bool = True) -> subprocess.CompletedProcess:
    """Run `python ARGS` in the checkout with (by default) the optional packages blocked."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=_env(tmp_path, block),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _photo_folder(root: Path, n: int = 8, size: int = 40) -> Path:
    """A folder of small random-colour JPEGs and PNGs."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        rgb = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / f"img{i}.{'jpg' if i % 2 else 'png'}")
    return root


def test_blocker_really_blocks(tmp_path: Path) -> None:
    # Without this, every other test here could pass because the blocker did nothing.
    proc = _run(tmp_path, ["-c", "import grain"])
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr


def test_import_and_every_command_parser_load_without_optional_packages(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import colorjax, colorjax.cli, colorjax.inference, colorjax.evaluate, colorjax.bench\n"
        "import colorjax.train.loop, colorjax.data\n"
        "colorjax.cli.build_parser()\n"
        "from colorjax.data import make_source, decode_image\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r})))\n"
    )
    proc = _run(tmp_path, ["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_loader_without_grain_is_one_clear_error(tmp_path: Path) -> None:
    code = (
        "from colorjax.errors import MissingDependencyError\n"
        "try:\n"
        "    from colorjax.data import make_loader\n"
        "except MissingDependencyError as err:\n"
        "    print('MISSING', err)\n"
    )
    proc = _run(tmp_path, ["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert "MISSING" in proc.stdout and "pip install grain" in proc.stdout
    assert "fetch_wheels.sh" in proc.stdout


@pytest.mark.slow
def test_synthetic_bench_runs_and_loader_kinds_are_skipped(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ["-m", "colorjax.cli", "bench", "--models", "colornet-tiny", "--resolutions", "32"]
    args += ["--batch-sizes", "2", "--kinds", "train", "loader", "train_e2e", "--trials", "1"]
    args += ["--iters", "1", "--warmup", "0", "--out", str(out)]
    proc = _run(tmp_path, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_kind = {r["kind"]: r for r in records}
    assert by_kind["train"]["status"] == "ok" and by_kind["train"]["images_per_s"] > 0
    for kind in ("loader", "train_e2e"):
        assert by_kind[kind]["status"] == "skipped"
        assert "grain" in by_kind[kind]["note"].lower()


@pytest.mark.slow
def test_train_on_folder_needs_grain_and_works_with_it(tmp_path: Path) -> None:
    photos = _photo_folder(tmp_path / "photos")
    args = ["-m", "colorjax.cli", "train", "--config", str(ROOT / "experiments/demo_cpu.py")]
    args += ["--set", f"data.source=folder:{photos}", "--set", "data.image_size=32"]
    args += ["--set", "data.val_fraction=0.25", "--set", "train.batch_size=2"]
    args += ["--set", "train.steps=2", "--set", "train.eval_batch_size=2"]
    args += ["--set", "train.checkpoint_every=2", "--no-progress"]
    blocked = _run(tmp_path, [*args, "--workdir", str(tmp_path / "run_blocked")])
    assert blocked.returncode == 2, blocked.stderr[-3000:]
    last = blocked.stderr.strip().splitlines()[-1]
    assert last.startswith("colorjax train: error:") and "grain" in last.lower()
    # The failed run saved no checkpoint that a later run would try to resume.
    assert not has_checkpoint(tmp_path / "run_blocked")
    # The same command with Grain importable trains (the wheels path of the GPU box).
    ok = _run(tmp_path, [*args, "--workdir", str(tmp_path / "run")], block=False)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "to step 2" in ok.stdout
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("step") == 2 for line in metrics)
