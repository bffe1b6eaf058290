"""`colorjax export` / `colorjax.load_exported`: one jax.export file runs like the jitted model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import random_variables

import colorjax
from colorjax import cli
from colorjax.errors import WeightsError
from colorjax.exported import export_model, load_exported, read_exported, save_exported
from colorjax.inference import Colorizer
from colorjax.models import build_model
from colorjax.models.predict import predict_ab, upsample_to
from colorjax.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(1, 32, 32), (2, 64, 96)]  # two batches and sizes, one of them not square


def l_batch(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, h, w, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A classification ColorNet (bins decoded in the artefact) and its exported file."""
    model = build_model("colornet-tiny-cls")
    variables = random_variables(model, 32)
    meta = {"name": None, "model": "colornet-tiny-cls", "working_size": 32}
    payload, header = export_model(model, variables, meta, temperature=0.3)
    path = save_exported(tmp_path_factory.mktemp("export") / "tiny.jaxexport", payload, header)
    return model, variables, path


@pytest.mark.parametrize(("n", "h", "w"), SIZES)
def test_exported_equals_the_jitted_model(tiny, n, h, w):
    model, variables, path = tiny
    exported = load_exported(path)
    l_norm = l_batch(n, h, w)
    want = jax.jit(lambda x: predict_ab(model, variables, x, temperature=0.3))(l_norm)
    got = exported(l_norm)
    assert got.shape == (n, h, w, 2)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_header_records_what_the_artefact_takes(tiny):
    _, _, path = tiny
    header, _ = read_exported(path)
    assert header["stride"] == 8 and header["working_size"] == 32
    assert header["platforms"] == ["cpu", "cuda"] and header["temperature"] == 0.3
    assert header["takes_hints"] is False


def test_symbolic_upsampling_equals_jax_image_resize():
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
    spec = jax.ShapeDtypeStruct(
        jax.export.symbolic_shape("b, 5*h, 7*w, 3"), np.float32
    )  # the exported path: integer factors of symbolic sizes
    fn = jax.export.export(jax.jit(lambda v: upsample_to(v, (4 * v.shape[1], 4 * v.shape[2]))))(
        spec
    )
    want = jax.image.resize(x, (2, 20, 28, 3), "bilinear")
    np.testing.assert_allclose(np.asarray(fn.call(x)), np.asarray(want), atol=1e-5)


def test_a_colorizer_runs_the_artefact_like_the_model(tiny):
    model, variables, path = tiny
    exported = load_exported(path)
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)
    want = Colorizer(model, variables, 32, temperature=0.3).colorize(rgb)
    got = Colorizer(exported, {}, exported.meta["working_size"]).colorize(rgb)
    np.testing.assert_array_equal(got, want)


def test_damaged_or_foreign_files_are_refused(tiny, tmp_path):
    _, _, path = tiny
    cut = tmp_path / "cut.jaxexport"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="damaged"):
        load_exported(cut)
    other = tmp_path / "weights.jaxexport"
    other.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(WeightsError, match="not a colorjax exported model"):
        load_exported(other)


def test_load_exported_needs_only_jax(tiny):
    # A fresh interpreter where Flax, Optax and Orbax cannot be imported.
    _, _, path = tiny
    code = (
        "import sys\n"
        "for name in ('flax', 'optax', 'orbax', 'tensorflow_datasets', 'grain', 'PIL'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np, colorjax\n"
        f"m = colorjax.load_exported({str(path)!r})\n"
        "print(m(np.zeros((1, 16, 24, 1), np.float32)).shape)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "(1, 16, 24, 2)"


def test_export_cli_from_a_weights_file(tmp_path, capsys):
    model = build_model("colornet-tiny")
    variables = random_variables(model, 32)
    source = save_weights(
        tmp_path / "w.safetensors", "colornet-tiny", {}, variables, {"working_size": 32}
    )
    out = tmp_path / "tiny.jaxexport"
    assert cli.main(["export", str(source), "--out", str(out), "--platforms", "cpu"]) == 0
    assert "input (N, H, W, 1) with H, W multiples of 8" in capsys.readouterr().out
    l_norm = l_batch(1, 24, 40)
    want = jax.jit(lambda x: predict_ab(model, variables, x))(l_norm)
    np.testing.assert_allclose(np.asarray(load_exported(out)(l_norm)), np.asarray(want), atol=1e-5)
    # Existing files are kept unless --overwrite; a wrong suffix is refused.
    assert cli.main(["export", str(source), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["export", str(source), "--out", str(tmp_path / "x.bin")]) == 2
    assert "must end in .jaxexport" in capsys.readouterr().err


@pytest.mark.slow
def test_the_bundled_default_exports_and_matches():
    model, variables, meta = colorjax.load_pretrained("colornet-lite2-cls4.tinyimagenet")
    payload, header = export_model(model, variables, meta, temperature=0.38)
    exported = load_exported_bytes(payload, header)
    for n, h, w in [(1, 64, 64), (1, 96, 160)]:
        l_norm = l_batch(n, h, w)
        want = jax.jit(lambda x: predict_ab(model, variables, x, temperature=0.38))(l_norm)
        np.testing.assert_allclose(np.asarray(exported(l_norm)), np.asarray(want), atol=2e-5)


def load_exported_bytes(payload: bytes, header: dict):
    """Deserialise without a file (the bundled model's artefact is 30 MB)."""
    from colorjax.exported import ExportedModel

    return ExportedModel(jax.export.deserialize(bytearray(payload)), header, "<memory>")
