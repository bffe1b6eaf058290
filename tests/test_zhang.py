"""Zhang et al. ECCV16/SIGGRAPH17 ports: PyTorch equality, .pth reading, conversion, hub flow.

The PyTorch reference networks (benchmarks/torch_zhang.py) are written from the published
architecture with the official state-dict keys; tests that need them skip without torch. The
committed fixtures (tests/data/*.pth, made with torch) keep the no-torch reader tested in CI.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

import colorjax
from colorjax import weights
from colorjax.errors import InputShapeError, OfflineError, WeightsError
from colorjax.inference.predict import predict_ab
from colorjax.models import build_model
from colorjax.weights import pth, pth_convert

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
FIXTURES = {"zip": DATA / "tiny_state_dict_zip.pth", "legacy": DATA / "tiny_state_dict_legacy.pth"}
FAST = {"retries": 1, "backoff": 0.01, "timeout": 10.0, "progress": False}


def _expected_fixture() -> dict[str, np.ndarray]:
    """The tensors the fixtures hold (tests/data/make_pth_fixtures.py writes them)."""
    sys.path.insert(0, str(DATA))
    try:
        from make_pth_fixtures import expected_tensors
    finally:
        sys.path.remove(str(DATA))
    return expected_tensors()


# ---------------------------------------------------------------------------- no-torch reader


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_reader_loads_committed_fixture_without_torch(kind: str) -> None:
    state = pth.load_state_dict(FIXTURES[kind])
    expected = _expected_fixture()
    assert list(state) == list(expected)  # order kept, as in the OrderedDict
    for key, value in expected.items():
        assert state[key].dtype == value.dtype, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    assert "torch" not in sys.modules or sys.modules["torch"] is not None  # reader never imports


def test_reader_does_not_import_torch(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys; from colorjax.weights import pth; "
        f"pth.load_state_dict({str(FIXTURES['zip'])!r}); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _Evil:
    """Pickles as a call to os.system: a real .pth never contains this."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _evil_zip(path: Path, payload: bytes) -> None:
    """A zip laid out like torch.save's, whose data.pkl is `payload`."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")


def test_foreign_global_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    _evil_zip(evil, pickle.dumps({"w": _Evil(marker)}, protocol=2))
    with pytest.raises(WeightsError, match=r"(posix|os|nt)\.system"):
        pth.load_state_dict(evil)
    assert not marker.exists()
    # The same payload in the legacy container is refused the same way.
    legacy = tmp_path / "evil_legacy.pth"
    header = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {}))
    legacy.write_bytes(header + pickle.dumps({"w": _Evil(marker)}, protocol=2))
    with pytest.raises(WeightsError, match=r"system"):
        pth.load_state_dict(legacy)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path: Path) -> None:
    # GLOBAL builtins.eval + REDUCE, hand-assembled: refused at find_class, before the call.
    payload = b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R."
    evil = tmp_path / "eval.pth"
    _evil_zip(evil, payload)
    with pytest.raises(WeightsError, match=r"builtins\.eval"):
        pth.load_state_dict(evil)


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_truncated_pth_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    data = FIXTURES[kind].read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) - 300])
    with pytest.raises(WeightsError, match="truncated|damaged|not a"):
        pth.load_state_dict(cut)


def test_not_a_pth_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a pickle")
    with pytest.raises(WeightsError, match="not a readable PyTorch file|magic"):
        pth.load_state_dict(junk)


# ---------------------------------------------------------------------------- models


def test_models_are_registered_pure_and_stride_checked() -> None:
    for name in ("zhang-eccv16", "zhang-siggraph17"):
        model = build_model(name)
        x = jax.ShapeDtypeStruct((1, 64, 48, 1), np.float32)
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        assert set(variables) == {"params"}  # BatchNorm frozen: no batch_stats collection
        out = jax.eval_shape(lambda v, x, m=model: m.apply(v, x), variables, x)
        assert out.shape == (1, 64, 48, 2)
        with pytest.raises(InputShapeError, match="multiples of 8"):
            jax.eval_shape(
                lambda v, m=model: m.apply(v, np.zeros((1, 60, 48, 1), np.float32)), variables
            )
    eccv = build_model("zhang-eccv16")
    variables = jax.eval_shape(eccv.init, jax.random.key(0), x)
    logits = jax.eval_shape(
        lambda v: eccv.apply(v, np.zeros((1, 64, 48, 1), np.float32), return_logits=True),
        variables,
    )
    assert logits.shape == (1, 16, 12, 313)


def test_hints_on_a_model_without_hints_are_refused() -> None:
    from colorjax.errors import ConfigError

    model = build_model("zhang-eccv16")
    hints = (np.zeros((1, 8, 8, 2), np.float32), np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(ConfigError, match="takes no colour hints"):
        predict_ab(model, {}, np.zeros((1, 8, 8, 1), np.float32), hints=hints)


# ---------------------------------------------------------------------------- PyTorch equality


@pytest.fixture(scope="module")
def torch_zhang():
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import torch_zhang as module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def _he_init_(module, seed: int):  # noqa: ANN001, ANN202
    """He-normal convs and random BatchNorm so activations stay O(1) through 20+ layers."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                w = layer.weight
                if isinstance(layer, nn.ConvTranspose2d):
                    fan_in = w.shape[0] * w.shape[2] * w.shape[3] / 4  # stride 2: 1/4 of taps
                else:
                    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
                w.copy_(torch.randn(w.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if layer.bias is not None:
                    layer.bias.copy_(0.05 * torch.randn(layer.bias.shape, generator=gen))
    return module


def _saved(torch_zhang, tmp_path: Path, name: str, seed: int, legacy: bool = False):  # noqa: ANN001, ANN202
    """A randomly initialised reference network, torch.save'd; returns (net, path)."""
    import torch

    cls = torch_zhang.ECCV16Reference if name == "zhang-eccv16" else torch_zhang.SIGGRAPH17Reference
    torch.manual_seed(seed)
    net = torch_zhang.randomise_(_he_init_(cls(), seed), seed)
    if name == "zhang-eccv16":
        with torch.no_grad():
            # A sharper softmax, and bin centres spread like the real ones (|ab| / 110 <= 1),
            # so the decoded ab varies across the image.
            net.model8[6].weight.mul_(4.0)
            gen = torch.Generator().manual_seed(seed)
            net.model_out.weight.copy_(torch.rand(2, 313, 1, 1, generator=gen) * 2 - 1)
    path = tmp_path / f"{name}-{seed}{'-legacy' if legacy else ''}.pth"
    if legacy:
        torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    else:
        torch.save(net.state_dict(), path)
    return net, path


def _inputs(h: int, w: int, seed: int, hints: bool):  # noqa: ANN202
    """Smooth-ish L in [0, 100] plus optional random square hints (CIE ab, 0/1 mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    L = 50 + 35 * np.sin(7 * xx + 3 * yy) * np.cos(5 * yy) + 10 * rng.uniform(-1, 1, (h, w))
    L = np.clip(L, 0, 100).astype(np.float32)[None, :, :, None]
    ab = np.zeros((1, h, w, 2), np.float32)
    mask = np.zeros((1, h, w, 1), np.float32)
    if hints:
        for _ in range(6):
            y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
            ab[0, y : y + 5, x : x + 5] = rng.uniform(-80, 80, 2)
            mask[0, y : y + 5, x : x + 5] = 1.0
    return L, ab, mask


def _torch_out(net, L, ab, mask, hints: bool) -> np.ndarray:  # noqa: ANN001
    import torch

    nchw = [torch.from_numpy(a.transpose(0, 3, 1, 2).copy()) for a in (L, ab, mask)]
    with torch.no_grad():
        out = net(nchw[0], nchw[1], nchw[2]) if hints else net(nchw[0])
    return out.numpy().transpose(0, 2, 3, 1)


CASES = [
    ("zhang-eccv16", 256, 256, False, False),
    ("zhang-eccv16", 200, 136, False, True),
    ("zhang-siggraph17", 256, 256, True, False),
    ("zhang-siggraph17", 136, 200, False, True),
    ("zhang-siggraph17", 200, 136, True, False),
]


@pytest.mark.parametrize(("name", "h", "w", "hints", "legacy"), CASES)
def test_converted_weights_match_pytorch(torch_zhang, tmp_path, name, h, w, hints, legacy) -> None:  # noqa: ANN001
    net, path = _saved(torch_zhang, tmp_path, name, seed=h + w, legacy=legacy)
    out_file = pth_convert.convert_file(path, name, tmp_path / "w.safetensors")
    model, variables, meta = colorjax.load_pretrained(out_file)
    assert meta["model"] == name and meta["converted_from"]["sha256"] == weights.sha256_file(path)
    L, ab, mask = _inputs(h, w, seed=h * w, hints=hints)
    expected = _torch_out(net, L, ab, mask, hints) / 110.0
    l_norm = L / 50.0 - 1.0
    hint_arrays = (ab / 110.0, mask) if hints else None
    got = np.asarray(
        jax.jit(lambda v, x, hh: predict_ab(model, v, x, hints=hh))(variables, l_norm, hint_arrays)
    )
    assert got.shape == expected.shape == (1, h, w, 2)
    assert float(np.std(expected)) > 0.02  # the reference output is not a flat map
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    if hints:  # the hints change the output: the test would notice them being dropped
        plain = np.asarray(predict_ab(model, variables, l_norm))
        assert float(np.max(np.abs(plain - got))) > 1e-2


def test_wrong_architecture_state_dict_is_refused(torch_zhang, tmp_path) -> None:  # noqa: ANN001
    _, path = _saved(torch_zhang, tmp_path, "zhang-eccv16", seed=1)
    with pytest.raises(WeightsError, match="zhang-siggraph17|architecture"):
        pth_convert.convert_file(path, "zhang-siggraph17", tmp_path / "x.safetensors")


# ---------------------------------------------------------------------------- hub flow


def _pth_entry(name: str, model: str, data: bytes, urls: list[str]) -> dict:
    return {
        "name": name,
        "family": model,
        "model": model,
        "format": "pytorch-state-dict",
        "working_size": 256,
        "urls": urls,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "licence": "BSD-2-Clause",
    }


@pytest.fixture(scope="module")
def eccv_pth(tmp_path_factory) -> bytes:
    """A full-size ECCV16 state dict with random weights, saved by torch (skips without it)."""
    torch_zhang = pytest.importorskip("torch") and _torch_zhang_module()
    _, path = _saved(torch_zhang, tmp_path_factory.mktemp("pth"), "zhang-eccv16", seed=3)
    return path.read_bytes()


def _torch_zhang_module():  # noqa: ANN202
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import torch_zhang
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return torch_zhang


def test_download_verifies_converts_once_then_loads_from_cache(
    tmp_path, eccv_pth, monkeypatch
) -> None:  # noqa: ANN001
    src = tmp_path / "release.pth"
    src.write_bytes(eccv_pth)
    manifest = {"weights": [_pth_entry("zhang-test", "zhang-eccv16", eccv_pth, [src.as_uri()])]}
    env = {"COLORJAX_HOME": str(tmp_path / "home")}
    path = weights.resolve_weights("zhang-test", manifest, env=env, **FAST)
    assert path == weights.cache_path(weights.get_entry("zhang-test", manifest), env)
    assert weights.read_metadata(path)["model"] == "zhang-eccv16"
    assert not list(path.parent.glob("*.pth*"))  # the download is removed after conversion
    calls = []
    monkeypatch.setattr(pth_convert, "load_state_dict", lambda p: calls.append(p))
    src.unlink()  # from now on the cache alone serves it, without parsing anything again
    again = weights.resolve_weights("zhang-test", manifest, env={**env, "COLORJAX_OFFLINE": "1"})
    assert again == path and calls == []
    rows = weights.verify_weights("zhang-test", manifest, env=env)
    assert [r["status"] for r in rows] == ["ok"]
    with open(path, "r+b") as f:  # corrupt the converted file: verify says so
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    assert [r["status"] for r in weights.verify_weights("zhang-test", manifest, env=env)] == [
        "corrupted"
    ]


def test_wrong_sha256_is_refused_before_parsing(tmp_path, eccv_pth, monkeypatch) -> None:  # noqa: ANN001
    src = tmp_path / "release.pth"
    src.write_bytes(eccv_pth)
    entry = _pth_entry("zhang-test", "zhang-eccv16", eccv_pth, [src.as_uri()])
    entry["sha256"] = "0" * 64
    parsed = []
    monkeypatch.setattr(pth_convert, "load_state_dict", lambda p: parsed.append(p))
    env = {"COLORJAX_HOME": str(tmp_path / "home")}
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.resolve_weights("zhang-test", {"weights": [entry]}, env=env, **FAST)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        pth_convert.import_pth(src, "zhang-test", {"weights": [entry]}, env=env)
    assert parsed == []


def test_truncated_download_is_refused(tmp_path, eccv_pth) -> None:  # noqa: ANN001
    src = tmp_path / "release.pth"
    src.write_bytes(eccv_pth[: len(eccv_pth) // 2])
    entry = _pth_entry("zhang-test", "zhang-eccv16", eccv_pth, [src.as_uri()])
    env = {"COLORJAX_HOME": str(tmp_path / "home")}
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.resolve_weights("zhang-test", {"weights": [entry]}, env=env, **FAST)
    assert not weights.cache_path(entry, env).exists()


def test_offline_and_not_cached_names_the_fix(tmp_path) -> None:  # noqa: ANN001
    entry = _pth_entry("zhang-test", "zhang-eccv16", b"x", ["https://example.invalid/x.pth"])
    env = {"COLORJAX_HOME": str(tmp_path), "COLORJAX_OFFLINE": "1"}
    with pytest.raises(OfflineError, match="weights import FILE --name zhang-test"):
        weights.resolve_weights("zhang-test", {"weights": [entry]}, env=env)


def test_cli_import_converts_a_local_file(tmp_path, eccv_pth, monkeypatch, capsys) -> None:  # noqa: ANN001
    from colorjax import cli

    src = tmp_path / "local.pth"
    src.write_bytes(eccv_pth)
    manifest = tmp_path / "manifest.json"
    entry = _pth_entry("zhang-test", "zhang-eccv16", eccv_pth, ["https://example.invalid/x"])
    manifest.write_text(json.dumps({"weights": [entry]}))
    monkeypatch.setenv("COLORJAX_HOME", str(tmp_path / "home"))
    argv = ["weights", "--manifest", str(manifest), "import", str(src), "--name", "zhang-test"]
    assert cli.main(argv) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.is_file() and weights.read_metadata(printed)["model"] == "zhang-eccv16"
    monkeypatch.setenv("COLORJAX_OFFLINE", "1")
    model, _, meta = colorjax.load_pretrained("zhang-test", manifest=manifest)
    assert meta["path"] == str(printed) and model.__class__.__name__ == "ZhangECCV16"
    assert cli.main(["weights", "import", str(src)]) == 2  # neither --name nor --model/--out


def test_packaged_manifest_lists_the_official_files() -> None:
    entries = {e["name"]: e for e in weights.load_manifest()["weights"]}
    eccv, sig = entries["zhang-eccv16.official"], entries["zhang-siggraph17.official"]
    assert eccv["sha256"] == "9b330a0bae53f4ded77b1e23defbf78beaa09c10ebc4c4999e8e4f4a160b93f9"
    assert sig["sha256"] == "df00044c0a4d7c3edcecf6f75437ce346a66e7a42612d9b968e1a7e17dbc6f66"
    assert (eccv["size"], sig["size"]) == (128_976_165, 136_787_426)
    for entry in (eccv, sig):
        assert entry["format"] == "pytorch-state-dict" and entry["licence"].startswith("BSD-2")
        assert entry["urls"][0].startswith("https://colorizers.s3.us-east-2.amazonaws.com/")
        # The file names carry the sha256 prefix, as torch.hub's check_hash expects.
        assert entry["sha256"][:8] in entry["urls"][0]


def test_reference_tensors_fill_the_published_file_sizes(torch_zhang) -> None:  # noqa: ANN001
    # The official files cannot be fetched here; their sizes can still check the architecture:
    # the tensors must account for all but a little pickle metadata (~160 B per tensor).
    sizes = {e["model"]: e["size"] for e in weights.load_manifest()["weights"]}
    nets = {
        "zhang-eccv16": torch_zhang.ECCV16Reference(),
        "zhang-siggraph17": torch_zhang.SIGGRAPH17Reference(),
    }
    for name, net in nets.items():
        state = net.state_dict()
        tensor_bytes = sum(
            v.numel() * v.element_size() for k, v in state.items() if "num_batches" not in k
        )
        overhead = sizes[name] - tensor_bytes
        assert 0 < overhead < 250 * len(state), (name, overhead)
