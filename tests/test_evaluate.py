"""Tests for colorjax.evaluate and `colorjax eval`: outputs, baseline, gray exclusion, sharding."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import random_variables
from PIL import Image

from colorjax import data, evaluate, models
from colorjax.cli import eval as eval_cli

RES = 32
METRICS = {
    "psnr",
    "ssim",
    "colorfulness_pred",
    "colorfulness_true",
    "colorfulness_diff",
    "auc",
    "saturation_ratio",
    # hue agreement, pooled over the photos: per sector and balanced
    "hue_red",
    "hue_yellow",
    "hue_green",
    "hue_cyan",
    "hue_blue",
    "hue_magenta",
    "hue_balanced",
}


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    """A colourful smooth image with noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    x = np.linspace(0.0, 1.0, width)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=3)
    base = 0.5 + 0.4 * np.sin(3.0 * x + 2.0 * y + phase)
    noisy = base * 255.0 + rng.normal(0.0, 8.0, base.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny():
    model = models.build_model("colornet-tiny")
    variables = random_variables(model, RES)
    return model, variables, {"working_size": RES, "model": "colornet-tiny"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    sizes = [(40, 50), (64, 33), (32, 32), (50, 90)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_photo(h, w, i)).save(root / f"p{i}.png")
    Image.fromarray(_photo(45, 45, 9)[..., 0]).save(root / "z_gray.png")  # near-gray truth
    (root / "q_broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_eval_cli_writes_every_output(tiny, folder, tmp_path, capsys):
    from colorjax.weights import save_weights

    model, variables, meta = tiny
    weights = tmp_path / "tiny.safetensors"
    save_weights(weights, "colornet-tiny", {}, variables, {"working_size": RES})
    out = tmp_path / "report"
    parser = argparse.ArgumentParser()
    eval_cli.configure_parser(parser)
    args = parser.parse_args(
        [
            "--weights",
            str(weights),
            "--data",
            f"folder:{folder}",
            "--resolution",
            str(RES),
            "--batch-size",
            "4",
            "--contact-sheet",
            "2",
            "--out",
            str(out),
        ]
    )
    assert eval_cli.run(args) == 0
    printed = capsys.readouterr().out
    assert "gray baseline" in printed and "psnr" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["model"]) == METRICS and set(summary["baseline"]) == METRICS
    assert summary["counts"] == {
        "seen": 6,
        "evaluated": 4,
        "excluded_gray": 1,
        "gray": 1,
        "unreadable": 1,
    }
    assert summary["protocol"]["resolution"] == RES and summary["protocol"]["split"] == "all"
    assert summary["protocol"]["working_size"] == RES
    assert summary["versions"]["jax"] == jax.__version__
    assert summary["weights"]["model"] == "colornet-tiny"

    with open(out / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(r["gray"] == "0" for r in rows)
    assert all(r["name"].endswith(f"p{i}.png") for i, r in enumerate(rows))
    # Per-image columns average to the summary; hue agreement is pooled over pixels, not
    # averaged over photos, so it has no per-image column.
    for key in (k for k in METRICS if not k.startswith("hue_")):
        for side in ("model", "baseline"):
            mean = np.mean([float(r[f"{side}_{key}"]) for r in rows])
            assert mean == pytest.approx(summary[side][key], rel=1e-5, abs=1e-6)

    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.shape == (2 * RES, 3 * RES, 3)
    for row, name in enumerate(("p0.png", "p1.png")):
        truth = data.preprocess_eval(np.asarray(Image.open(folder / name)), RES)
        cells = sheet[row * RES : (row + 1) * RES]
        np.testing.assert_array_equal(cells[:, 2 * RES :], truth)
        gray = cells[:, :RES].astype(int)
        assert np.abs(gray[..., 0] - gray[..., 2]).max() <= 1


def test_perfect_model_beats_baseline_and_keep_gray(tiny, folder):
    from colorjax.data import make_source

    model, variables, meta = tiny
    source = make_source(f"folder:{folder}", split="all")
    records = [(source.describe(i), source[i]) for i in range(len(source))]
    perfect = evaluate.run_evaluation(
        model, variables, meta, records, resolution=RES, batch_size=3, predict_fn=lambda x: x
    )
    s = perfect.summary
    assert s["model"]["auc"] == pytest.approx(1.0)
    assert s["baseline"]["auc"] < 0.99
    assert s["model"]["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert s["baseline"]["ssim"] < s["model"]["ssim"]
    assert s["model"]["psnr"] > s["baseline"]["psnr"] + 10
    assert s["baseline"]["colorfulness_pred"] == pytest.approx(0.0, abs=0.5)

    kept = evaluate.evaluate(
        model, variables, meta, records, resolution=RES, batch_size=3, keep_gray=True
    )
    assert kept["counts"]["evaluated"] == 5 and kept["counts"]["gray"] == 1
    assert kept["counts"]["excluded_gray"] == 0
    limited = evaluate.evaluate(
        model, variables, meta, records, resolution=RES, batch_size=3, limit=2
    )
    assert limited["counts"]["seen"] == limited["counts"]["evaluated"] == 2
    assert limited["protocol"]["limit"] == 2


def test_no_colour_photo_is_a_clear_error(tiny):
    model, variables, meta = tiny
    gray = np.repeat(_photo(RES, RES, 1)[..., :1], 3, axis=-1)
    with pytest.raises(ValueError, match="keep-gray"):
        evaluate.evaluate(model, variables, meta, [gray], resolution=RES)


_SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from colorjax import data, evaluate, inference, models, parallel
    sys.path.insert(0, sys.argv[1])
    from helpers import random_variables
    from test_evaluate import _photo
    assert jax.device_count() == 8
    model = models.build_model("colornet-tiny")
    variables = random_variables(model, 32)
    photos = [_photo(32 + i, 40, i) for i in range(7)]

    def tint(rgb):  # a fixed element-wise "colorizer": no float reductions before rounding
        shifted = rgb.astype(jnp.int32) + jnp.asarray([20, -10, 5])
        return jnp.clip(shifted, 0, 255).astype(jnp.uint8)

    out = {"eval": {}, "pred": {}}
    crops = np.stack([data.preprocess_eval(p, 32) for p in photos] + [photos[0][:32, :32]])
    for n in (1, 8):
        mesh = parallel.make_mesh(n)
        result = evaluate.run_evaluation(
            model, variables, {"working_size": 32}, photos, resolution=32, batch_size=6,
            mesh=mesh, predict_fn=tint,
        )
        out["eval"][n] = {"counts": result.summary["counts"], "rows": result.rows}
        batch = jax.device_put(crops, parallel.data_sharding(mesh))
        out["pred"][n] = np.asarray(inference.predict_rgb(model, variables, batch, 32)).tolist()
    print(json.dumps(out))
    """
)


def test_one_and_eight_devices_give_identical_results(worker_env):
    env = worker_env(8)  # conftest: 8 fake CPU devices, the checkout and tests/ importable
    tests_dir = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDED_SCRIPT, tests_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, eight = out["eval"]["1"], out["eval"]["8"]
    assert one["counts"]["evaluated"] == 7 and one["counts"] == eight["counts"]
    assert len(one["rows"]) == len(eight["rows"]) == 7
    for r1, r8 in zip(one["rows"], eight["rows"], strict=True):
        assert r1.keys() == r8.keys()
        for key in r1:
            if isinstance(r1[key], float):
                # Equal up to float32 summation order (per-device batch sizes differ).
                assert r1[key] == pytest.approx(r8[key], rel=2e-5, abs=1e-5), key
            else:
                assert r1[key] == r8[key]
    # The network on a sharded batch: the same colours, up to a rare 1-level rounding flip
    # (convolutions over 1 vs 8 photos per device may sum in a different order).
    p1, p8 = np.asarray(out["pred"]["1"]), np.asarray(out["pred"]["8"])
    assert p1.shape == (8, 32, 32, 3)
    diff = np.abs(p1 - p8)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
