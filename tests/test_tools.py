"""The scripts that make the shipped weights (tools/) and the head calibration they apply."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import colorjax
from colorjax import gamut
from colorjax.models import build_model
from colorjax.weights.calibrate import shift_head_bias

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import bundle_weights  # noqa: E402


def _log_w(lam: float) -> np.ndarray:
    # Independent of colorjax's own formula: w ∝ ((1 - lam) p + lam / Q)^-1 with E_p[w] = 1.
    p = np.asarray(gamut.default_prior(), np.float64)
    w = 1.0 / ((1.0 - lam) * p + lam / p.size)
    return np.log(w / np.sum(p * w))


@pytest.mark.parametrize("beta", [0.5, -0.5])
def test_shift_head_bias_moves_every_logit_by_beta_log_w(beta):
    model = build_model("colornet-tiny-cls")
    x = jax.random.uniform(jax.random.PRNGKey(0), (1, 32, 32, 1), minval=-1.0, maxval=1.0)
    variables = jax.device_get(model.init(jax.random.PRNGKey(1), x))
    shifted = shift_head_bias(variables, beta, lam=0.5)
    before, after = model.apply(variables, x), model.apply(shifted, x)
    np.testing.assert_allclose(
        after - before, np.broadcast_to(-beta * _log_w(0.5), before.shape), atol=2e-4
    )
    assert shift_head_bias(variables, 0.0) is variables


def test_bundle_weights_writes_a_calibrated_file_and_its_entry(tmp_path, monkeypatch):
    from test_weights import _fake_run

    monkeypatch.setenv("COLORJAX_HOME", str(tmp_path / "home"))
    workdir, out = tmp_path / "run", tmp_path / "weights"
    _fake_run(workdir, "colornet-tiny-cls", ema=False)
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format_version": 1, "weights": []}))
    argv = [
        "--workdir", str(workdir), "--name", "colornet-tiny-cls.test", "--beta", "0.5",
        "--rebalance-lambda", "0.5", "--temperature", "0.3", "--working-size", "64",
        "--default", "--description", "d", "--command", "c", "--hardware", "h", "--time", "t",
        "--weights-dir", str(out),
    ]  # fmt: skip
    assert bundle_weights.main(argv) == 0
    path = out / "colornet-tiny-cls.test.safetensors"
    entry = json.loads((out / "manifest.json").read_text())["weights"][0]
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (entry["name"], entry["default"], entry["temperature"]) == (
        "colornet-tiny-cls.test",
        True,
        0.3,
    )
    _, variables, meta = colorjax.load_pretrained(str(path))
    assert meta["working_size"] == 64 and meta["training"]["calibration"]["beta"] == 0.5
    from colorjax.train.run import load_inference_params

    _, trained = load_inference_params(workdir)
    want = np.asarray(trained["params"]["head"]["bias"], np.float64) - 0.5 * _log_w(0.5)
    # float16 storage: within its rounding of the bias values.
    np.testing.assert_allclose(variables["params"]["head"]["bias"], want, rtol=2e-3, atol=2e-3)
    assert jnp.all(jnp.isfinite(variables["params"]["head"]["kernel"]))
