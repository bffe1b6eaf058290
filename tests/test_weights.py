"""Tests for colorjax.weights: file format, manifest and tags, verified downloads, cache, export."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

import colorjax
from colorjax import weights
from colorjax.cli import weights as weights_cli
from colorjax.errors import ConfigError, DownloadError, OfflineError, WeightsError
from colorjax.train.export import export_checkpoint

FAST = {"retries": 2, "backoff": 0.01, "timeout": 10.0, "progress": False}


# ---------------------------------------------------------------------------- fixtures


def _init(name: str, **overrides):
    from colorjax.models import build_model

    model = build_model(name, **overrides)
    size = max(32, int(model.stride))
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, size, size, 1), minval=-1.0, maxval=1.0)
    # The real model's parameter tree, filled with seeded random values: running model.init
    # would compile every initializer, which is slow on a busy CPU and tests nothing here.
    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(lambda v: model.init({"params": key, "dropout": key}, v), x)
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    return model, variables, x


@pytest.fixture(scope="module")
def tiny():
    return _init("colornet-tiny")


@pytest.fixture(scope="module")
def weights_bytes(tiny, tmp_path_factory) -> bytes:
    _, variables, x = tiny
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    weights.save_weights(path, "colornet-tiny", {}, variables, {"working_size": x.shape[1]})
    return path.read_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files; server.modes[path] picks ok / 404 / 500 / cut / range quirks."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        mode = srv.modes.get(self.path, "ok")
        count = sum(1 for p, _ in srv.requests if p == self.path)
        if mode == "404" or self.path not in srv.files:
            self.send_error(404)
            return
        if mode == "500" or (mode == "500_once" and count == 1):
            self.send_error(500)
            return
        data = srv.files[self.path]
        if mode.startswith("cut_once") and count == 1:
            # Promise the whole file, send half, then hang up.
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        start = 0
        if rng and mode != "cut_once_norange":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.modes, srv.requests = {}, {}, []
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("COLORJAX_HOME", str(cache))
    monkeypatch.delenv("COLORJAX_OFFLINE", raising=False)
    return cache


def _entry(name: str, data: bytes, urls: list[str], **extra) -> dict:
    entry = {
        "name": name,
        "family": "colornet",
        "model": "colornet-tiny",
        "overrides": {},
        "working_size": 32,
        "urls": urls,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    entry.update(extra)
    return entry


def _manifest(tmp_path: Path, *entries: dict) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format_version": 1, "weights": list(entries)}))
    return path


def _serve(server, path: str, data: bytes, mode: str = "ok") -> str:
    server.files[path] = data
    server.modes[path] = mode
    return server.base + path


def _files(folder: Path) -> list[Path]:
    # Empty lock files may stay; no weights data (complete, partial or bad) may.
    found = folder.rglob("*") if folder.exists() else []
    return sorted(p for p in found if p.is_file() and not p.name.endswith(".lock"))


def _assert_same_outputs(model, variables, ref_model, ref_variables, x) -> None:
    """Both models are the same architecture and give bit-identical outputs on x."""
    assert model == ref_model
    apply = jax.jit(model.apply)  # one compile for both calls (same shapes and structure)
    np.testing.assert_array_equal(
        np.asarray(apply(variables, x)), np.asarray(apply(jax.device_get(ref_variables), x))
    )


# ---------------------------------------------------------------------------- cache dir / manifest


def test_cache_dir_precedence(tmp_path):
    assert weights.cache_dir({"COLORJAX_HOME": "/a", "XDG_CACHE_HOME": "/b"}) == Path("/a")
    assert weights.cache_dir({"XDG_CACHE_HOME": "/b"}) == Path("/b/colorjax")
    assert weights.cache_dir({}) == Path.home() / ".cache" / "colorjax"
    assert weights.is_offline({"COLORJAX_OFFLINE": "1"})
    assert not weights.is_offline({"COLORJAX_OFFLINE": "0"})
    assert not weights.is_offline({})


def test_packaged_manifest_is_valid():
    manifest = weights.load_manifest()
    assert isinstance(manifest["weights"], list)
    for entry in manifest["weights"]:
        if entry["sha256"] is None:  # only official PyTorch files with no published hash
            assert entry["format"] == "pytorch-state-dict" and entry["hub_size_mb"] > 0
            continue
        assert len(entry["sha256"]) == 64


def test_unknown_name_lists_known_names(tmp_path, weights_bytes):
    manifest = _manifest(tmp_path, _entry("alpha", weights_bytes, ["http://x/a"]))
    with pytest.raises(WeightsError, match="alpha"):
        weights.resolve_weights("nope", manifest)


# ---------------------------------------------------------------------------- file format


def test_header_metadata_round_trip(tmp_path, tiny):
    _, variables, _ = tiny
    path = tmp_path / "w.safetensors"
    training = {"steps": 7, "data": "embedded"}
    weights.save_weights(
        path,
        "colornet-tiny",
        {"width": 8},
        variables,
        {"working_size": 48, "training": training, "note": {"k": [1, 2]}},
    )
    meta = weights.read_metadata(path)
    assert meta["model"] == "colornet-tiny"
    assert meta["overrides"] == {"width": 8}
    assert meta["working_size"] == 48
    assert meta["training"] == training
    assert meta["note"] == {"k": [1, 2]}
    assert meta["format_version"] == weights.FORMAT_VERSION
    from colorjax import __version__

    assert meta["colorjax_version"] == __version__
    # The header is plain safetensors: any reader sees the same strings and tensors.
    raw = safetensors.numpy.load_file(path)
    flat = weights.flatten_variables(variables)
    assert set(raw) == set(flat)
    assert all(k.startswith("params/") for k in raw)
    for key, value in flat.items():
        np.testing.assert_array_equal(raw[key], value)
    assert not list(tmp_path.glob("*.tmp"))


def test_float16_storage_round_trip(tmp_path, tiny):
    _, variables, _ = tiny
    p32, p16 = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    weights.save_weights(p32, "colornet-tiny", {}, variables, {"working_size": 32})
    weights.save_weights(p16, "colornet-tiny", {}, variables, {"working_size": 32}, dtype="float16")
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    loaded, meta = weights.load_weights(p16)
    assert meta["dtype"] == "float16"
    flat, ref = weights.flatten_variables(loaded), weights.flatten_variables(variables)
    assert set(flat) == set(ref)
    for key, value in flat.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(
            value, np.asarray(ref[key]).astype(np.float16).astype(np.float32)
        )


def test_load_local_path_gives_identical_outputs(tmp_path, tiny):
    model, variables, x = tiny
    path = tmp_path / "w.safetensors"
    weights.save_weights(path, "colornet-tiny", {}, variables, {"working_size": x.shape[1]})
    model2, loaded, meta = colorjax.load_pretrained(path)
    assert meta["model"] == "colornet-tiny" and meta["working_size"] == x.shape[1]
    _assert_same_outputs(model2, loaded, model, variables, x)


def test_weights_for_another_architecture(tmp_path):
    _, cls_vars, _ = _init("colornet-tiny-cls")
    path = tmp_path / "liar.safetensors"
    # The header claims the regression model but the tensors belong to the classification one.
    weights.save_weights(path, "colornet-tiny", {}, cls_vars, {"working_size": 32})
    with pytest.raises(WeightsError, match="another architecture"):
        colorjax.load_pretrained(path)


def test_wrong_shape_names_the_parameter(tmp_path, tiny):
    _, variables, _ = tiny
    flat = weights.flatten_variables(variables)
    key = next(k for k in sorted(flat) if k.endswith("kernel"))
    flat[key] = np.zeros(flat[key].shape[:-1] + (flat[key].shape[-1] + 1,), np.float32)
    path = tmp_path / "bad.safetensors"
    weights.save_weights(
        path, "colornet-tiny", {}, weights.unflatten_variables(flat), {"working_size": 32}
    )
    with pytest.raises(WeightsError, match="wrong-shape") as info:
        colorjax.load_pretrained(path)
    assert key in str(info.value)


def test_missing_parameter_is_an_error(tmp_path, tiny):
    _, variables, _ = tiny
    flat = weights.flatten_variables(variables)
    key = sorted(flat)[0]
    del flat[key]
    path = tmp_path / "short.safetensors"
    weights.save_weights(
        path, "colornet-tiny", {}, weights.unflatten_variables(flat), {"working_size": 32}
    )
    with pytest.raises(WeightsError, match="1 missing") as info:
        colorjax.load_pretrained(path)
    assert key in str(info.value)


def test_not_a_weights_file(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    safetensors.numpy.save_file({"a": np.zeros(3, np.float32)}, foreign)
    with pytest.raises(WeightsError, match="not a colorjax weights file"):
        weights.load_weights(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match="not a valid safetensors"):
        weights.load_weights(garbage)
    with pytest.raises(WeightsError, match="does not exist"):
        colorjax.load_pretrained(tmp_path / "absent.safetensors")


def test_gan_generator_only_file_loads(tmp_path):
    model, variables, x = _init("deepcolorization-small")
    params = dict(variables["params"])
    assert "discriminator" in params
    del params["discriminator"]
    path = tmp_path / "gan.safetensors"
    weights.save_weights(
        path, "deepcolorization-small", {}, {"params": params}, {"working_size": 32}
    )
    model2, loaded, _ = colorjax.load_pretrained(path)
    assert "discriminator" not in loaded["params"]
    _assert_same_outputs(model2, loaded, model, {"params": params}, x)


# ---------------------------------------------------------------------------- downloads


def test_good_download_then_cached(tmp_path, home, server, tiny, weights_bytes):
    model, variables, x = tiny
    url = _serve(server, "/tiny.safetensors", weights_bytes)
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url]))
    path = weights.resolve_weights("tiny", manifest, **FAST)
    assert path.read_bytes() == weights_bytes
    assert path.is_relative_to(home)
    assert _files(home) == [path]  # no .part left behind
    model2, loaded, meta = colorjax.load_pretrained("tiny", manifest=manifest, **FAST)
    assert meta["name"] == "tiny"
    _assert_same_outputs(model2, loaded, model, variables, x)
    assert len(server.requests) == 1  # the second call used the cache


def test_tampered_download_is_rejected_and_removed(tmp_path, home, server, weights_bytes):
    bad = bytearray(weights_bytes)
    bad[len(bad) // 2] ^= 0xFF
    url = _serve(server, "/t.safetensors", bytes(bad))
    entry = _entry("tiny", weights_bytes, [url])
    manifest = _manifest(tmp_path, entry)
    with pytest.raises(WeightsError) as info:
        weights.resolve_weights("tiny", manifest, **FAST)
    message = str(info.value)
    assert entry["sha256"] in message
    assert hashlib.sha256(bytes(bad)).hexdigest() in message
    assert _files(home) == []


def test_cut_connection_is_retried_and_leaves_nothing_partial(
    tmp_path, home, server, weights_bytes
):
    # pooch keeps no partial file: a transfer cut short is retried from the start.
    url = _serve(server, "/cut.safetensors", weights_bytes, "cut_once")
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url]))
    path = weights.resolve_weights("tiny", manifest, **FAST)
    assert path.read_bytes() == weights_bytes
    assert [rng for _, rng in server.requests] == [None, None]
    assert _files(home) == [path]


def test_concurrent_resolves_download_once(tmp_path, home, server, weights_bytes):
    url = _serve(server, "/cc.safetensors", weights_bytes)
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url]))
    results: list = []

    def worker():
        try:
            results.append(weights.resolve_weights("tiny", manifest, **FAST))
        except Exception as err:  # surfaced by the assertion below
            results.append(err)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and isinstance(results[0], Path), results
    assert results[0].read_bytes() == weights_bytes
    assert len(server.requests) == 1


def test_404_is_a_clear_error_without_retry(tmp_path, home, server, weights_bytes):
    url = _serve(server, "/gone.safetensors", weights_bytes, "404")
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url]))
    with pytest.raises(DownloadError, match="404") as info:
        weights.resolve_weights("tiny", manifest, **FAST)
    assert url in str(info.value)
    assert len(server.requests) == 1
    assert _files(home) == []


def test_500_retries_then_fails(tmp_path, home, server, weights_bytes):
    url = _serve(server, "/err.safetensors", weights_bytes, "500")
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url]))
    with pytest.raises(DownloadError, match="500") as info:
        weights.resolve_weights("tiny", manifest, **FAST)
    assert url in str(info.value)
    assert len(server.requests) == FAST["retries"] + 1


def test_500_once_then_success(tmp_path, home, server, weights_bytes):
    url = _serve(server, "/flaky.safetensors", weights_bytes, "500_once")
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url]))
    assert weights.resolve_weights("tiny", manifest, **FAST).read_bytes() == weights_bytes
    assert len(server.requests) == 2


def test_urls_tried_in_order_and_file_urls(tmp_path, home, server, weights_bytes):
    local = tmp_path / "mirror.safetensors"
    local.write_bytes(weights_bytes)
    dead = _serve(server, "/dead.safetensors", weights_bytes, "404")
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [dead, local.as_uri()]))
    path = weights.resolve_weights("tiny", manifest, **FAST)
    assert path.read_bytes() == weights_bytes
    assert len(server.requests) == 1


def test_offline_mode(tmp_path, home, server, monkeypatch, weights_bytes):
    url = _serve(server, "/o.safetensors", weights_bytes)
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url]))
    monkeypatch.setenv("COLORJAX_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        weights.resolve_weights("tiny", manifest, **FAST)
    expected_path = weights.cache_path(weights.get_entry("tiny", manifest))
    assert str(expected_path) in str(info.value)
    assert "COLORJAX_OFFLINE" in str(info.value)
    assert server.requests == []
    monkeypatch.delenv("COLORJAX_OFFLINE")
    path = weights.resolve_weights("tiny", manifest, **FAST)
    monkeypatch.setenv("COLORJAX_OFFLINE", "1")
    assert weights.resolve_weights("tiny", manifest, **FAST) == path
    assert len(server.requests) == 1


def test_corrupted_cache_caught_by_verify_and_redownloaded(tmp_path, home, server, weights_bytes):
    url = _serve(server, "/c.safetensors", weights_bytes)
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url]))
    path = weights.resolve_weights("tiny", manifest, **FAST)
    assert [r["status"] for r in weights.verify_weights(manifest=manifest)] == ["ok"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    rows = weights.verify_weights("tiny", manifest)
    assert [r["status"] for r in rows] == ["corrupted"]
    assert _run_cli(["--manifest", str(manifest), "verify"]) == 1
    assert weights.resolve_weights("tiny", manifest, **FAST).read_bytes() == weights_bytes
    assert len(server.requests) == 2
    assert _run_cli(["--manifest", str(manifest), "verify", "tiny"]) == 0


def test_bundled_weights_are_verified_not_copied(tmp_path, home, weights_bytes):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "b.safetensors").write_bytes(weights_bytes)
    manifest = _manifest(
        tmp_path, _entry("b", weights_bytes, ["bundled:b.safetensors"], default=True)
    )
    path = weights.resolve_weights(None, manifest, bundled_dir=bundle, **FAST)
    assert path == bundle / "b.safetensors"
    assert _files(home) == []
    (bundle / "b.safetensors").write_bytes(weights_bytes[:-1] + b"\x00")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.resolve_weights("b", manifest, bundled_dir=bundle, **FAST)
    rows = weights.verify_weights("b", manifest, bundled_dir=bundle)
    assert [r["status"] for r in rows] == ["corrupted"]


def test_default_per_family(tmp_path, weights_bytes):
    entries = [
        _entry("gan", weights_bytes, ["http://x/g"], family="deepcolorization", default=True),
        _entry("cn", weights_bytes, ["http://x/c"], default=True),
        _entry("cn2", weights_bytes, ["http://x/c2"]),
    ]
    manifest = _manifest(tmp_path, *entries)
    assert weights.default_entry(None, manifest).name == "cn"
    assert weights.default_entry("deepcolorization", manifest).name == "gan"
    with pytest.raises(WeightsError, match="no pretrained weights"):
        weights.default_entry("other", manifest)


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    weights_cli.configure_parser(parser)
    return weights_cli.run(parser.parse_args(argv))


def test_cli_list_and_download(tmp_path, home, server, weights_bytes, capsys):
    url = _serve(server, "/l.safetensors", weights_bytes)
    manifest = _manifest(tmp_path, _entry("tiny", weights_bytes, [url], description="demo"))
    assert _run_cli(["--manifest", str(manifest), "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "remote" in out and "demo" in out
    assert _run_cli(["--manifest", str(manifest), "download", "tiny", "--retries", "1"]) == 0
    assert Path(capsys.readouterr().out.strip()).read_bytes() == weights_bytes
    assert _run_cli(["--manifest", str(manifest), "list"]) == 0
    assert "cached" in capsys.readouterr().out


# ---------------------------------------------------------------------------- export


def _fake_run(workdir: Path, model_name: str, ema: bool) -> None:
    """Write a real Orbax training checkpoint (random state of the real shapes) to workdir."""
    from colorjax.checkpoint import CheckpointStore
    from colorjax.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig
    from colorjax.train.state import abstract_state, make_task

    config = ExperimentConfig(
        model=ModelConfig(name=model_name),
        data=DataConfig(image_size=32),
        optim=OptimConfig(ema_decay=0.9 if ema else None),
    )
    task = make_task(config)
    shapes = abstract_state(task, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    rng = np.random.default_rng(3)

    def fill(s):
        if np.issubdtype(s.dtype, np.floating):
            return jnp.asarray((0.1 * rng.standard_normal(s.shape)).astype(s.dtype))
        return jnp.zeros(s.shape, s.dtype)

    state = jax.tree.map(fill, shapes)
    store = CheckpointStore(workdir, async_save=False)
    try:
        store.save(5, state, {"position": 0}, config, metrics={"psnr": 20.0})
    finally:
        store.close()
    records = [
        {"step": 5, "kind": "eval", "psnr": 20.0, "ssim": 0.5, "time": 1.0},
        {"step": 5, "kind": "train", "loss": 0.1, "time": 2.0},
        {"step": 9, "kind": "eval", "psnr": 30.0, "ssim": 0.9, "time": 3.0},  # after the export
    ]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize(
    ("model_name", "ema"), [("colornet-tiny", False), ("deepcolorization-small", True)]
)
def test_export_then_load_matches_checkpoint(tmp_path, home, model_name, ema):
    from colorjax.models import build_model
    from colorjax.train.run import load_inference_params

    workdir = tmp_path / "run"
    _fake_run(workdir, model_name, ema)
    path, entry = export_checkpoint(workdir, "mine", tmp_path / "out")
    assert path == tmp_path / "out" / "mine.safetensors"
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["size"] == path.stat().st_size
    assert entry["model"] == model_name and entry["working_size"] == 32
    assert entry["steps"] == 5
    assert entry["eval"] == {"psnr": 20.0, "ssim": 0.5}
    # The entry is a working manifest entry: resolve by name, download from its file: URL.
    manifest = _manifest(tmp_path, entry)
    model, loaded, meta = colorjax.load_pretrained("mine", manifest=manifest, **FAST)
    assert meta["training"]["step"] == 5
    assert "discriminator" not in loaded["params"]
    config, ckpt = load_inference_params(workdir)
    ref_model = build_model(config.model.name, **config.model.overrides)
    x = jax.random.uniform(jax.random.PRNGKey(2), (1, 32, 32, 1), minval=-1.0, maxval=1.0)
    ref_params = dict(ckpt["params"])
    ref_params.pop("discriminator", None)  # not exported; the generator alone gives the output
    _assert_same_outputs(model, loaded, ref_model, {"params": ref_params}, x)
    if ema:  # the EMA generator is exported, not the live one
        ema_flat = weights.flatten_variables({"g": ckpt["params"]["generator"]})
        got = weights.flatten_variables({"g": loaded["params"]["generator"]})
        assert all(np.array_equal(got[k], ema_flat[k]) for k in ema_flat)


def test_export_cli_writes_weights_and_entry(tmp_path, capsys):
    workdir = tmp_path / "run"
    _fake_run(workdir, "colornet-tiny", ema=False)
    out = tmp_path / "out"
    argv = ["export", "--workdir", str(workdir), "--name", "cli", "--out", str(out)]
    assert _run_cli([*argv, "--dtype", "float16", "--url", "https://example.org/cli.st"]) == 0
    entry = json.loads((out / "cli.json").read_text())
    assert entry["urls"] == ["https://example.org/cli.st"]
    assert entry["sha256"] == weights.sha256_file(out / "cli.safetensors")
    assert weights.read_metadata(out / "cli.safetensors")["dtype"] == "float16"
    with pytest.raises(ConfigError, match="no checkpoint"):
        export_checkpoint(tmp_path / "empty", "x", out)


# ------------------------------------------------------------------------- shared parameter parts


def _shared_pair(tmp_path: Path, base_bytes_for_manifest: bytes | None = None):
    """A full colornet-tiny file and a lean one that takes one subtree from it by name."""
    from helpers import random_variables

    from colorjax.models import build_model

    variables = {"params": random_variables(build_model("colornet-tiny"), 32)["params"]}
    full = tmp_path / "full.safetensors"
    weights.save_weights(full, "colornet-tiny", {}, variables, {"working_size": 32})
    top = sorted(variables["params"])[0]
    sha = hashlib.sha256(full.read_bytes()).hexdigest()
    meta = {
        "working_size": 32,
        "shared": {f"params/{top}": {"weights": "base.t", "path": f"params/{top}", "sha256": sha}},
    }
    lean = tmp_path / "lean.safetensors"
    lean_params = {k: v for k, v in variables["params"].items() if k != top}
    weights.save_weights(lean, "colornet-tiny", {}, {"params": lean_params}, meta)
    base_entry = _entry("base.t", base_bytes_for_manifest or full.read_bytes(), [full.as_uri()])
    manifest = _manifest(tmp_path, base_entry, _entry("lean.t", lean.read_bytes(), [lean.as_uri()]))
    return variables, lean, manifest


def test_weights_sharing_a_subtree_load_whole_by_name_and_by_path(tmp_path, home):
    variables, lean, manifest = _shared_pair(tmp_path)
    assert lean.stat().st_size < (tmp_path / "full.safetensors").stat().st_size
    for source in ("lean.t", str(lean)):
        loaded = colorjax.load_pretrained(source, manifest=manifest)
        got = jax.tree_util.tree_leaves_with_path(loaded.variables)
        want = dict(jax.tree_util.tree_leaves_with_path(variables))
        assert len(got) == len(want)
        for path, value in got:
            np.testing.assert_array_equal(value, want[path])


def test_a_shared_subtree_from_another_file_than_recorded_is_refused(tmp_path, home):
    # The manifest's base.t is another file than the one the lean file was made with.
    other = tmp_path / "other.bin"
    other.write_bytes(b"x" * 10)
    _, lean, manifest = _shared_pair(tmp_path, base_bytes_for_manifest=other.read_bytes())
    with pytest.raises(WeightsError, match="install matching versions of both"):
        colorjax.load_pretrained("lean.t", manifest=manifest)
