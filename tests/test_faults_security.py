"""Second fault pass (issue 24): names from manifests never leave the cache; runs survive SIGTERM.

Each case drives the real command or library entry point and checks the exit status, the one
error line, and that no file outside the folder a name belongs to was written or removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import random_variables

from colorjax import cli, models, weights
from colorjax.errors import OutputPathError, WeightsError
from colorjax.fileio import child_path

SIZE = 32


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    model = models.create_model("colornet-tiny")
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    weights.save_weights(path, "colornet-tiny", {}, random_variables(model, SIZE), {"working_size": SIZE})
    return path


def _manifest(tmp_path: Path, weights_file: Path, **fields) -> Path:
    entry = {
        "name": "ok-name",
        "model": "colornet-tiny",
        "sha256": weights.sha256_file(weights_file),
        "urls": [weights_file.resolve().as_uri()],
        **fields,
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format_version": 1, "weights": [entry]}))
    return path


def _error_line(err: str, command: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"colorjax {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "../../escaped"},
        {"name": "..\\escaped"},
        {"aliases": ["../../escaped"]},
        {"aliases": ["fine", "/abs/escaped"]},
        {"name": ".hidden"},
    ],
)
def test_manifest_names_that_leave_the_cache_are_refused_everywhere(
    fields, weights_file, tmp_path, capsys, monkeypatch
):
    home = tmp_path / "home" / "deep" / "cache"
    monkeypatch.setenv("COLORJAX_HOME", str(home))
    # A file where the traversal would land: it must survive untouched.
    victim = tmp_path / "home" / "escaped-" / "x"
    victim.parent.mkdir(parents=True)
    victim.write_text("keep me")
    manifest = _manifest(tmp_path, weights_file, **fields)
    name = "colornet-tiny"  # the entry by its architecture: the request itself is harmless
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (90, 120, 40)).save(photo)
    for argv, command in (
        (["weights", "--manifest", str(manifest), "download", name], "weights"),
        (["weights", "--manifest", str(manifest), "list"], "weights"),
        (["colorize", str(photo), "--manifest", str(manifest), "--weights", name, "-o",
          str(tmp_path / "out")], "colorize"),
    ):
        rc = cli.main(argv)
        line = _error_line(capsys.readouterr().err, command)
        assert rc == 2 and "not allowed" in line, line
    outside = {p for p in tmp_path.rglob("*") if p.is_file()} - {manifest, photo, victim}
    assert not outside, outside  # nothing written anywhere, not even inside the cache
    assert victim.read_text() == "keep me"


def test_cache_paths_are_proven_inside_the_cache(weights_file, tmp_path):
    entry = {
        "name": "ok",
        "model": "colornet-tiny",
        "sha256": weights.sha256_file(weights_file),
        "urls": ["file:///x"],
    }
    env = {"COLORJAX_HOME": str(tmp_path)}
    assert weights.cache_path(entry, env).parent == tmp_path / "weights"
    # A record built around the manifest check (e.g. by code) still cannot escape.
    from colorjax.weights.manifest import PretrainedCfg

    bad = PretrainedCfg(name="../../x", model="colornet-tiny", sha256="0" * 64, urls=("a",))
    with pytest.raises(OutputPathError, match="outside"):
        weights.cache_path(bad, env)
    with pytest.raises(WeightsError, match="not allowed"):
        weights.cache_path({**entry, "aliases": ["a/../../b"]}, env)


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\\b", "/etc", ".x", "a\0b"])
def test_child_path_refuses_every_way_out(name, tmp_path):
    with pytest.raises(OutputPathError):
        child_path(tmp_path, name, "name")
    assert child_path(tmp_path, "plain-name.x", "name") == tmp_path / "plain-name.x"
