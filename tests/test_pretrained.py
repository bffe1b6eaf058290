"""The one loader: `arch.tag` names and aliases, create_model(pretrained=...), hf:// downloads."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import huggingface_hub.constants  # noqa: F401 - read before a test sets HF_HUB_OFFLINE, see FAST
import jax
import numpy as np
import pytest

import colorjax
from colorjax import models, weights
from colorjax.errors import DownloadError, OfflineError, WeightsError
from colorjax.weights.manifest import get_tagged

# huggingface_hub reads HF_HUB_OFFLINE once, when first imported; colorjax reads it per call.
# Importing it here keeps one test's monkeypatched HF_HUB_OFFLINE=1 from sticking to the rest.
FAST = {"retries": 1, "backoff": 0.01, "timeout": 10.0, "progress": False}
COMMIT = "a" * 40


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A colornet-tiny weights file with seeded random parameters of the real shapes."""
    model = models.build_model("colornet-tiny")
    x = jax.ShapeDtypeStruct((1, 32, 32, 1), np.float32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    weights.save_weights(path, "colornet-tiny", {}, variables, {"working_size": 32})
    return path, variables


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("COLORJAX_HOME", str(cache))
    for name in ("COLORJAX_OFFLINE", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return cache


def _manifest(tmp_path: Path, path: Path, urls: list[str], name="colornet-tiny.mine", **extra):
    entry = {
        "name": name,
        "model": "colornet-tiny",
        "family": "colornet",
        "working_size": 32,
        "urls": urls,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        **extra,
    }
    out = tmp_path / "manifest.json"
    out.write_text(json.dumps({"format_version": 1, "weights": [entry]}))
    return out


def _same(a, b) -> None:
    flat_a, flat_b = weights.flatten_variables(a), weights.flatten_variables(b)
    assert set(flat_a) == set(flat_b)
    for key, value in flat_b.items():
        np.testing.assert_array_equal(flat_a[key], value)


# ---------------------------------------------------------------------------- names and tags


def test_packaged_names_are_arch_dot_tag_and_old_names_are_aliases():
    for cfg in weights.list_pretrained():
        assert cfg.name == f"{cfg.model}.{cfg.tag}"
        models.get_spec(cfg.model)  # the architecture is a registered model
    old_to_new = {
        "colornet-small-cls4-tinyimagenet": "colornet-small-cls4.tinyimagenet",
        "deepcolorization-colornet-tinyimagenet": "deepcolorization-colornet.tinyimagenet",
        "zhang-eccv16": "zhang-eccv16.official",
        "zhang-siggraph17": "zhang-siggraph17.official",
    }
    for old, new in old_to_new.items():
        assert weights.get_entry(old).name == new
        assert weights.get_entry(new).name == new
    # An architecture alone picks its default tag; arch + tag picks that tag.
    assert weights.get_entry("colornet-small-cls4").name == "colornet-small-cls4.tinyimagenet"
    assert get_tagged("zhang-eccv16", "official").name == "zhang-eccv16.official"
    with pytest.raises(WeightsError, match="the tags of zhang-eccv16 are official"):
        get_tagged("zhang-eccv16", "nope")


def test_cache_file_keeps_the_name_it_had_before_tags():
    # Caches filled before `arch.tag` names must stay valid: the file is named by the alias.
    cfg = weights.get_entry("zhang-eccv16.official")
    assert weights.cache_path(cfg, {}).name == f"zhang-eccv16-{cfg.sha256[:12]}.safetensors"


def test_duplicate_alias_is_refused(tmp_path, tiny_file):
    path, _ = tiny_file
    manifest = json.loads(_manifest(tmp_path, path, ["file:///x"]).read_text())
    twin = dict(manifest["weights"][0], name="colornet-tiny.other", aliases=["colornet-tiny.mine"])
    manifest["weights"].append(twin)
    with pytest.raises(WeightsError, match="appears twice"):
        weights.load_manifest(manifest)


def test_pretrained_cfg_round_trips_the_entry(tmp_path, tiny_file):
    path, _ = tiny_file
    entry = json.loads(_manifest(tmp_path, path, ["file:///x"], licence="MIT").read_text())
    entry = entry["weights"][0]
    cfg = weights.PretrainedCfg.from_entry(entry)
    assert (cfg.model, cfg.tag, cfg.get("licence")) == ("colornet-tiny", "mine", "MIT")
    assert weights.PretrainedCfg.from_entry(cfg.to_entry()) == cfg


# ---------------------------------------------------------------------------- create_model


def test_create_model_without_weights_is_the_architecture_at_a_seeded_init():
    model, variables, meta = colorjax.create_model("colornet-tiny", seed=3)
    assert model == models.build_model("colornet-tiny") and meta["pretrained"] is False
    # The registry module's own init with the same key: the same tree, the same values.
    x = np.zeros((1, meta["working_size"], meta["working_size"], 1), np.float32)
    key = jax.random.PRNGKey(3)
    _same(variables, model.init({"params": key, "dropout": key}, x))
    other = weights.flatten_variables(colorjax.create_model("colornet-tiny", seed=4).variables)
    mine = weights.flatten_variables(variables)
    assert any(not np.array_equal(mine[k], other[k]) for k in mine)  # the seed is used
    # A tagged name without pretrained=... is still only the architecture (as in timm).
    tagged = colorjax.create_model("colornet-small-cls4.tinyimagenet")
    assert tagged.model == models.build_model("colornet-small-cls4")
    assert tagged.meta["pretrained"] is False


@pytest.mark.parametrize("form", ["true-tagged-name", "true-bare-arch", "tag", "path"])
def test_create_model_pretrained_forms(form, tmp_path, home, tiny_file):
    path, variables = tiny_file
    manifest = _manifest(tmp_path, path, [path.as_uri()], default=True)
    name, pretrained = {
        "true-tagged-name": ("colornet-tiny.mine", True),
        "true-bare-arch": ("colornet-tiny", True),
        "tag": ("colornet-tiny", "mine"),
        "path": ("colornet-tiny", path),
    }[form]
    loaded = colorjax.create_model(name, pretrained=pretrained, manifest=manifest)
    assert isinstance(loaded, colorjax.Pretrained)
    model, got, meta = loaded  # unpacks like the old 3-tuples
    assert model == models.build_model("colornet-tiny")
    _same(got, variables)
    assert meta["working_size"] == 32
    assert meta["name"] == (None if form == "path" else "colornet-tiny.mine")
    if form != "path":  # fetched through the manifest: verified into the cache
        assert Path(meta["path"]).is_relative_to(home)


def test_create_model_refuses_weights_of_another_architecture(tmp_path, home, tiny_file):
    path, _ = tiny_file
    with pytest.raises(WeightsError, match="do not fit"):
        colorjax.create_model("colornet-tiny-cls", pretrained=path)
    manifest = _manifest(tmp_path, path, [path.as_uri()])
    with pytest.raises(WeightsError, match="no pretrained weights colornet-small.mine"):
        colorjax.create_model("colornet-small", pretrained="mine", manifest=manifest)


def test_load_pretrained_names_aliases_and_paths_agree(tmp_path, home, tiny_file):
    path, variables = tiny_file
    manifest = _manifest(tmp_path, path, [path.as_uri()], aliases=["old-name"])
    by_name = colorjax.load_pretrained("colornet-tiny.mine", manifest=manifest)
    by_alias = colorjax.load_pretrained("old-name", manifest=manifest)
    by_path = colorjax.load_pretrained(path)
    assert by_name.meta["name"] == by_alias.meta["name"] == "colornet-tiny.mine"
    for loaded in (by_name, by_alias, by_path):
        _same(loaded.variables, variables)


# ---------------------------------------------------------------------------- hf:// downloads


def _hf_cache(home: Path, repo: str, filename: str, data: bytes) -> Path:
    """Lay a file out as huggingface_hub's cache does: blobs, a snapshot link, refs/main."""
    root = home / "huggingface" / f"models--{repo.replace('/', '--')}"
    blob = root / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    link = root / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True)
    link.symlink_to(blob)
    return blob


def test_hf_url_from_the_hub_cache_offline(tmp_path, home, monkeypatch, tiny_file):
    path, variables = tiny_file
    data = path.read_bytes()
    manifest = _manifest(tmp_path, path, ["hf://someone/colorjax-weights/tiny.safetensors"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        weights.resolve_weights("colornet-tiny.mine", manifest, **FAST)
    _hf_cache(home, "someone/colorjax-weights", "tiny.safetensors", data)
    resolved = weights.resolve_weights("colornet-tiny.mine", manifest, **FAST)
    assert resolved == weights.cache_path(weights.get_entry("colornet-tiny.mine", manifest))
    assert resolved.read_bytes() == data
    _same(colorjax.load_pretrained("colornet-tiny.mine", manifest=manifest).variables, variables)


def test_hf_blob_with_a_wrong_hash_is_deleted(tmp_path, home, monkeypatch, tiny_file):
    path, _ = tiny_file
    bad = bytearray(path.read_bytes())
    bad[-1] ^= 1
    manifest = _manifest(tmp_path, path, ["hf://someone/repo/tiny.safetensors"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    blob = _hf_cache(home, "someone/repo", "tiny.safetensors", bytes(bad))
    with pytest.raises(WeightsError, match="sha256 mismatch") as info:
        weights.resolve_weights("colornet-tiny.mine", manifest, **FAST)
    assert hashlib.sha256(bytes(bad)).hexdigest() in str(info.value)
    assert not blob.exists()
    assert not weights.cache_path(weights.get_entry("colornet-tiny.mine", manifest)).exists()


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """The two requests hf_hub_download makes: HEAD for metadata, GET for the bytes."""

    def log_message(self, *args):
        pass

    def _answer(self, body: bool) -> None:
        srv = self.server
        srv.requests.append((self.command, self.path))
        data = srv.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)


def test_hf_url_downloads_through_huggingface_hub(tmp_path, home, monkeypatch, tiny_file):
    path, variables = tiny_file
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    srv.files = {"/someone/repo/resolve/main/tiny.safetensors": path.read_bytes()}
    srv.requests = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
        manifest = _manifest(tmp_path, path, ["hf://someone/repo/tiny.safetensors"])
        loaded = colorjax.load_pretrained("colornet-tiny.mine", manifest=manifest, **FAST)
        _same(loaded.variables, variables)
        assert any(method == "GET" for method, _ in srv.requests)
        # The Hub's own cache holds the file too: offline, a fresh colorjax cache is refilled.
        Path(loaded.meta["path"]).unlink()
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        again = weights.resolve_weights("colornet-tiny.mine", manifest, **FAST)
        assert again.read_bytes() == path.read_bytes()
        # A file the repository does not have fails at once, naming the URL.
        missing = _manifest(tmp_path, path, ["hf://someone/repo/gone.safetensors"])
        monkeypatch.delenv("HF_HUB_OFFLINE")
        Path(again).unlink()
        before = len(srv.requests)
        with pytest.raises(DownloadError, match="gone.safetensors"):
            weights.resolve_weights("colornet-tiny.mine", missing, **FAST)
        assert len(srv.requests) - before <= 2  # one HEAD (maybe a GET), no retries
    finally:
        srv.shutdown()
        srv.server_close()
