"""The bad-input and fault catalogue (issue 13): each case ends in one clear error, loses nothing.

Every test drives the real command (colorjax.cli.main) or library entry point with a broken
input and checks three things: the exit status (2 for a user error, one line on stderr), the
message names the cause, and no file on disk was lost, replaced or left half-written.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import random_variables
from PIL import Image

from colorjax import cli, inference, models, weights
from colorjax import data as colorjax_data
from colorjax.errors import ImageDecodeError, OfflineError, PredictionError, WeightsError

SIZE = 32


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colourful uint8 RGB test photo with some noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    x = np.linspace(0.0, 1.0, width)[None, :, None]
    base = np.concatenate(
        [0.2 + 0.6 * y + 0 * x, 0.3 + 0.5 * x + 0 * y, 0.8 - 0.5 * x * y], axis=-1
    )
    noisy = base * 255.0 + rng.normal(0.0, 10.0, base.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file below folder (hidden ones included) with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the real CLI; return (exit status, stdout, stderr)."""
    rc = cli.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _one_error_line(err: str, command: str) -> str:
    """The single `colorjax COMMAND: error: ...` line of stderr (no traceback)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"colorjax {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny():
    model = models.build_model("colornet-tiny")
    variables = random_variables(model, SIZE, head_scale=0.2)
    return model, variables, {"working_size": SIZE, "model": "colornet-tiny"}


@pytest.fixture(scope="module")
def weights_file(tiny, tmp_path_factory) -> Path:
    _, variables, meta = tiny
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    weights.save_weights(path, "colornet-tiny", {}, variables, {"working_size": SIZE})
    return path


def _poke_tensor(path: Path, name_part: str, value: float) -> str:
    """Overwrite the first float32 of a tensor in a safetensors file in place (a bit flip)."""
    raw = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    key = next(k for k in sorted(header) if name_part in k and header[k]["dtype"] == "F32")
    start = 8 + length + header[key]["data_offsets"][0]
    raw[start : start + 4] = struct.pack("<f", value)
    path.write_bytes(bytes(raw))
    return key


# ------------------------------------------------------------------ 1. non-finite weights/output


def test_weights_with_one_nan_are_refused_by_every_command(weights_file, tmp_path, capsys):
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(weights_file.read_bytes())
    key = _poke_tensor(bad, "scale", float("nan"))
    with pytest.raises(WeightsError, match="non-finite") as info:
        weights.load_weights(bad)
    assert key in str(info.value)

    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(_photo(20, 30)).save(photos / "a.png")
    out = tmp_path / "out"
    rc, _, err = _main(["colorize", str(photos), "-o", str(out), "--weights", str(bad)], capsys)
    assert rc == 2 and "non-finite" in _one_error_line(err, "colorize")
    assert not out.exists() or not _files(out)  # no black image written

    rc, _, err = _main(
        ["eval", "--weights", str(bad), "--data", f"folder:{photos}", "--out", str(tmp_path / "e")],
        capsys,
    )
    assert rc == 2 and "non-finite" in _one_error_line(err, "eval")
    assert not (tmp_path / "e" / "summary.json").exists()


def test_saving_non_finite_weights_is_refused(tiny, tmp_path):
    _, variables, _ = tiny
    broken = {"params": dict(variables["params"])}
    leaf_path = next(iter(weights.flatten_variables(broken)))
    flat = weights.flatten_variables(broken)
    flat[leaf_path] = np.full_like(flat[leaf_path], np.inf)
    with pytest.raises(WeightsError, match="non-finite"):
        weights.save_weights(
            tmp_path / "x.safetensors",
            "colornet-tiny",
            {},
            weights.unflatten_variables(flat),
            {"working_size": SIZE},
        )
    assert not list(tmp_path.iterdir())


def test_non_finite_prediction_raises_and_writes_nothing(tiny):
    model, variables, _ = tiny
    flat = weights.flatten_variables(variables)
    head = next(k for k in sorted(flat) if k.endswith("kernel"))
    flat[head] = flat[head].copy()
    flat[head].flat[0] = np.nan  # a NaN that survives loading checks, as from a bad conversion
    broken = weights.unflatten_variables(flat)
    photo = _photo(24, 40)
    with pytest.raises(PredictionError, match="non-finite"):
        inference.Colorizer(model, broken, SIZE).colorize(photo)
    with pytest.raises(PredictionError, match="non-finite"):
        inference.predict_rgb(model, broken, photo[None, :24, :24], SIZE)
    # The same model with finite weights keeps the input's luminance (no black output).
    good = inference.Colorizer(model, variables, SIZE).colorize(photo)
    assert good.shape == photo.shape and good.mean() > 20


# ------------------------------------------------------------------ 2. strict decoding


def _corrupt_jpeg() -> bytes:
    """A JPEG with 64 bytes overwritten mid-scan that Pillow alone decodes without complaint."""
    buf = io.BytesIO()
    Image.fromarray(_photo(256, 256, 3)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    rng = np.random.default_rng(0)
    for _ in range(100):
        broken = bytearray(data)
        mid = len(data) // 2 + int(rng.integers(-500, 500))
        broken[mid : mid + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        try:
            Image.open(io.BytesIO(bytes(broken))).load()
        except OSError:
            continue
        return bytes(broken)
    raise AssertionError("Pillow rejected every corruption: the test needs another sample")


def test_corrupt_jpeg_is_unreadable_in_decode_colorize_data_and_training(
    weights_file, tmp_path, capsys
):
    from colorjax.data import make_loader, make_source

    bad = _corrupt_jpeg()
    with pytest.raises(ImageDecodeError, match="corrupt JPEG"):
        colorjax_data.decode_image(bad)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "bad.jpg").write_bytes(bad)
    for i in range(3):
        Image.fromarray(_photo(40, 40, i)).save(folder / f"good{i}.jpg", quality=95)

    out = tmp_path / "out"
    rc, _, err = _main(
        ["colorize", str(folder), "-o", str(out), "--weights", str(weights_file)], capsys
    )
    assert rc == 1 and "failed" in err and "bad.jpg" in err and "corrupt JPEG" in err
    assert sorted(_files(out)) == ["good0.png", "good1.png", "good2.png"]

    rc, out_text, _ = _main(["data", f"folder:{folder}"], capsys)
    assert rc == 1 and "unreadable: 1" in out_text and "bad.jpg" in out_text

    loader = make_loader(
        make_source(f"folder:{folder}", split="all"),
        batch_size=3,
        image_size=16,
        train=True,
        seed=0,
        num_epochs=1,
    )
    batches = list(loader)
    assert len(batches) == 1 and loader.skipped_unreadable == 1


def test_fifo_input_is_skipped_not_read(weights_file, tmp_path, capsys):
    import os

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        colorjax_data.decode_image(fifo)
    rc, _, err = _main(
        ["colorize", str(fifo), "-o", str(tmp_path / "o"), "--weights", str(weights_file)], capsys
    )
    assert rc == 1 and "not a regular file" in err


# ------------------------------------------------------------------ 3, 6. colorize output folder


def test_colorize_into_a_subfolder_twice_never_colorizes_its_outputs(
    weights_file, tmp_path, capsys
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_photo(20, 24, i)).save(folder / f"p{i}.png")
    argv = ["colorize", str(folder), "-o", str(folder / "out"), "--weights", str(weights_file)]
    assert _main(argv, capsys)[0] == 0
    rc, _, err = _main(argv, capsys)
    assert rc == 0 and "0 written to" in err and "2 skipped" in err
    assert sorted(_files(folder)) == ["out/p0.png", "out/p1.png", "p0.png", "p1.png"]
    # The same through a glob that would match the outputs.
    rc, _, err = _main(["colorize", f"{folder}/**/*.png", *argv[2:]], capsys)
    assert rc == 0 and "0 written to" in err and "2 skipped" in err
    assert not (folder / "out" / "out").exists()


def test_colorize_never_writes_over_an_input(weights_file, tmp_path, capsys):
    folder = tmp_path / "inplace"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_photo(20, 24, i)).save(folder / f"p{i}.jpg", quality=90)
    before = _files(folder)
    argv = ["colorize", str(folder), "-o", str(folder), "--format", "jpg", "--overwrite"]
    rc, _, err = _main([*argv, "--weights", str(weights_file)], capsys)
    assert rc == 1 and err.count("would replace an input photo") == 2
    assert _files(folder) == before


# ------------------------------------------------------------------ 4. empty results


def test_bench_with_no_runnable_resolution_is_an_error(capsys):
    rc, _, err = _main(["bench", "--models", "colornet-tiny", "--resolutions", "7"], capsys)
    assert rc == 2 and "multiple" in _one_error_line(err, "bench")


def _train_config(steps: int):
    from colorjax.config import ExperimentConfig

    c = ExperimentConfig()
    c.model.name = "colornet-tiny"
    c.data.source = "embedded"
    c.data.image_size = SIZE
    c.optim.ema_decay = 0.9
    c.train.batch_size = 2
    c.train.steps = steps
    c.train.checkpoint_every = 2
    c.train.log_every = 1
    c.train.eval_every = 0
    c.train.progress = False
    return c


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A work dir trained by the CLI to step 2 (checkpoints 1 and 2), shared read-only."""
    root = tmp_path_factory.mktemp("run")
    config = _train_config(2)
    config.train.checkpoint_every = 1
    (root / "config.json").write_text(config.to_json())
    workdir = root / "run"
    assert (
        cli.main(["train", "--config", str(root / "config.json"), "--workdir", str(workdir)]) == 0
    )
    return workdir


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_resume_with_fewer_steps_is_refused_and_keeps_the_config(finished_run, tmp_path, capsys):
    workdir = _copy_run(finished_run, tmp_path / "run")
    config_path = tmp_path / "c.json"
    config_path.write_text(_train_config(1).to_json())
    before = (workdir / "config.json").read_text()
    rc, out, err = _main(["train", "--config", str(config_path), "--workdir", str(workdir)], capsys)
    assert rc == 2 and "past train.steps=1" in _one_error_line(err, "train") and not out
    assert (workdir / "config.json").read_text() == before
    # The same steps again: nothing to do, said plainly.
    config_path.write_text(_train_config(2).to_json())
    rc, out, err = _main(["train", "--config", str(config_path), "--workdir", str(workdir)], capsys)
    assert rc == 0 and "already trained to step 2" in out


# ------------------------------------------------------------------ 5, 7. nothing lost


def test_export_refuses_to_replace_weights_without_overwrite(finished_run, tmp_path, capsys):
    out = tmp_path / "weights"
    argv = [
        "weights",
        "export",
        "--workdir",
        str(finished_run),
        "--name",
        "mine",
        "--out",
        str(out),
    ]
    assert _main(argv, capsys)[0] == 0
    (out / "mine.safetensors").write_bytes(b"my other weights")
    before = _files(out)
    rc, _, err = _main(argv, capsys)
    assert rc == 2 and "--overwrite" in _one_error_line(err, "weights")
    assert _files(out) == before
    assert _main([*argv, "--overwrite"], capsys)[0] == 0
    assert weights.read_metadata(out / "mine.safetensors")["model"] == "colornet-tiny"


_KILLED_WRITER = """
import os, sys
from colorjax import fileio
os.replace = lambda *a: os._exit(9)  # die between writing the temp file and renaming it
fileio.atomic_write_bytes(sys.argv[1], b"half")
"""


def test_temp_file_of_a_killed_writer_is_cleaned_on_the_next_run(tmp_path):
    import os
    import subprocess
    import sys

    from colorjax import fileio

    target = tmp_path / "out" / "a.png"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], check=False)
    assert proc.returncode == 9
    (left,) = (tmp_path / "out").iterdir()
    assert left.name.startswith(".a.png.") and left.name.endswith(".tmp")
    live = tmp_path / "out" / f".b.png.{os.getpid()}@{fileio._host()}.abcd1234.tmp"
    live.write_bytes(b"a write in progress in this process")
    unrelated = tmp_path / "out" / ".notes.tmp"
    unrelated.write_bytes(b"not ours")
    fileio._cleaned.clear()
    fileio.atomic_write_bytes(tmp_path / "out" / "c.png", b"new")
    assert not left.exists() and live.exists() and unrelated.exists()
    assert (tmp_path / "out" / "c.png").read_bytes() == b"new"


# ------------------------------------------------------------------ 8. one line, exit 2


def test_outputs_that_are_files_fail_before_any_work(finished_run, tmp_path, capsys, monkeypatch):
    from colorjax import evaluate

    a_file = tmp_path / "taken"
    a_file.write_text("a file, not a folder")
    config_path = tmp_path / "c.json"
    config_path.write_text(_train_config(2).to_json())
    rc, _, err = _main(["train", "--config", str(config_path), "--workdir", str(a_file)], capsys)
    assert rc == 2 and "is a file, not a folder" in _one_error_line(err, "train")

    def no_evaluation(*args, **kwargs):
        raise AssertionError("the evaluation ran before the output folder was checked")

    monkeypatch.setattr(evaluate, "run_evaluation", no_evaluation)
    rc, _, err = _main(["eval", "--data", "embedded", "--out", str(a_file)], capsys)
    assert rc == 2 and "--out" in _one_error_line(err, "eval")

    export = ["weights", "export", "--workdir", str(finished_run), "--name", "x"]
    rc, _, err = _main([*export, "--out", str(a_file)], capsys)
    assert rc == 2 and "is a file" in _one_error_line(err, "weights")
    rc, _, err = _main([*export, "--out", str(tmp_path / "w"), "--step", "7"], capsys)
    line = _one_error_line(err, "weights")
    assert rc == 2 and "no checkpoint at step 7" in line and "steps 1, 2" in line

    photo = tmp_path / "p.png"
    Image.fromarray(_photo(10, 10)).save(photo)
    monkeypatch.setattr(inference, "as_pretrained", no_evaluation)
    rc, _, err = _main(["colorize", str(photo), "-o", str(a_file)], capsys)
    assert rc == 2 and "-o" in _one_error_line(err, "colorize")
    assert a_file.read_text() == "a file, not a folder"


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ([], "not an object"),
        ({"format_version": "one", "weights": []}, "format_version must be an integer"),
        ({"weights": [{"name": "a", "model": "m", "sha256": 123, "urls": []}]}, "sha256"),
        (
            {"weights": [{"name": "a", "model": "m", "sha256": "0" * 64, "urls": "http://x"}]},
            "urls must be a list of strings",
        ),
        ({"weights": ["a"]}, "not an object"),
    ],
)
def test_malformed_manifests_are_one_clear_error(manifest, expected, tmp_path, capsys):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    for argv in (["list"], ["download", "a"], ["verify"]):
        rc, _, err = _main(["weights", "--manifest", str(path), *argv], capsys)
        assert rc == 2 and expected in _one_error_line(err, "weights")


def test_cache_that_is_a_file_is_one_clear_error(weights_file, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("COLORJAX_HOME", str(home))
    entry = {
        "name": "remote",
        "model": "colornet-tiny",
        "sha256": weights.sha256_file(weights_file),
        "urls": [weights_file.resolve().as_uri()],
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"format_version": 1, "weights": [entry]}))
    rc, _, err = _main(["weights", "--manifest", str(manifest), "download", "remote"], capsys)
    line = _one_error_line(err, "weights")
    assert rc == 2 and "COLORJAX_HOME" in line and str(home) in line
    assert home.read_text() == "not a folder"


def test_corrupt_cache_is_kept_and_named_when_offline(weights_file, tmp_path, monkeypatch):
    monkeypatch.setenv("COLORJAX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLORJAX_OFFLINE", "1")
    entry = {
        "name": "remote",
        "model": "colornet-tiny",
        "sha256": weights.sha256_file(weights_file),
        "urls": ["https://example.invalid/remote.safetensors"],
    }
    cached = weights.cache_path(entry)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupt")
    with pytest.raises(OfflineError, match="corrupt") as info:
        weights.resolve_weights("remote", {"weights": [entry]})
    assert "downloading" not in str(info.value) and cached.read_bytes() == b"corrupt"


def test_download_failure_mentions_a_partial_file_only_when_one_exists(tmp_path):
    from colorjax.errors import DownloadError

    missing_host = "http://127.0.0.1:9/none.safetensors"  # port 9 (discard): refused at once
    with pytest.raises(DownloadError) as info:
        weights.download.download(
            missing_host, tmp_path / "w.safetensors", retries=0, backoff=0.0, timeout=2
        )
    assert "partial file" not in str(info.value)
    assert not (tmp_path / "w.safetensors.part").exists()


# ------------------------------------------------------------------ 9. disk full while saving


def test_a_save_that_cannot_fit_is_refused_before_writing(finished_run, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from colorjax.checkpoint import CheckpointStore
    from colorjax.errors import CheckpointWriteError
    from colorjax.parallel import make_mesh
    from colorjax.train.state import abstract_state, make_task

    workdir = _copy_run(finished_run, tmp_path / "run")
    config = _train_config(4)
    store = CheckpointStore(workdir, async_save=False)
    try:
        state, data_state, _ = store.restore(None, abstract_state(make_task(config), make_mesh(1)))
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
        with pytest.raises(CheckpointWriteError, match="no space left") as info:
            store.save(4, state, data_state, config)
        assert "the last good checkpoint is step 2" in str(info.value)
    finally:
        store.close()
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1", "2"]


def test_disk_full_mid_save_is_one_line_and_the_run_resumes(tmp_path, capfd, monkeypatch):
    import errno

    from orbax.checkpoint._src.handlers import json_checkpoint_handler

    original = json_checkpoint_handler.JsonCheckpointHandler._save_fn
    calls = {"n": 0}

    async def disk_full_after_the_first_save(self, x, directory):
        calls["n"] += 1
        if calls["n"] > 2:  # the first checkpoint's two JSON items are written
            raise OSError(errno.ENOSPC, "No space left on device", str(directory))
        return await original(self, x, directory)

    monkeypatch.setattr(
        json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full_after_the_first_save
    )
    config_path = tmp_path / "c.json"
    config_path.write_text(_train_config(4).to_json())
    workdir = tmp_path / "run"
    argv = ["train", "--config", str(config_path), "--workdir", str(workdir)]
    assert cli.main(argv) == 2
    err = capfd.readouterr().err
    line = _one_error_line(err, "train")
    assert "no space left" in line and "step 4" in line and "last good checkpoint is step 2" in line
    assert len(err.splitlines()) < 10, err  # not thousands of lines of Orbax tracebacks
    # Space is back: the same command resumes from step 2 and finishes.
    monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", original)
    assert cli.main(argv) == 0
    assert "to step 4" in capfd.readouterr().out
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]


# ------------------------------------------------------------------ 10. messages name the cause


def test_resume_refusal_names_the_fields_that_differ(finished_run, tmp_path, capsys):
    workdir = _copy_run(finished_run, tmp_path / "run")
    config = _train_config(4)
    config.optim.optimizer = "sgd"
    config_path = tmp_path / "c.json"
    config_path.write_text(config.to_json())
    rc, _, err = _main(["train", "--config", str(config_path), "--workdir", str(workdir)], capsys)
    line = _one_error_line(err, "train")
    assert rc == 2 and "optim.optimizer 'adam' -> 'sgd'" in line
    assert "model.name" not in line and "image_size" not in line


def test_batch_sharding_error_names_the_field_it_came_from():
    from types import SimpleNamespace

    from colorjax.errors import ShardingError
    from colorjax.parallel import check_batch_divisible

    eight_devices = SimpleNamespace(devices=np.empty(8, dtype=object))
    with pytest.raises(ShardingError) as info:
        check_batch_divisible(12, eight_devices, "train.eval_batch_size")
    message = str(info.value)
    assert "--set train.eval_batch_size=8" in message and "train.batch_size" not in message


# ------------------------------------------------------------------ 13, 14. first run


def test_exported_ema_is_debiased_and_no_ema_gives_the_live_weights(finished_run):
    from colorjax.train.run import load_inference_params

    config = _train_config(2)
    p2 = _assert_ema_debiased(finished_run, config)
    _, live = load_inference_params(finished_run, ema=False)
    for key, value in weights.flatten_variables(live["params"]).items():
        np.testing.assert_array_equal(value, p2[key], err_msg=key)


def test_a_warm_started_run_exports_an_ema_debiased_against_its_start(finished_run, tmp_path):
    # p0 of a run started from init_weights is those weights, not a random init: with the
    # random one subtracted, a 1,000-step fine-tune (0.998^1000 = 13.5 %) exported garbage.
    from colorjax.train.export import export_checkpoint

    start, _ = export_checkpoint(finished_run, "start", tmp_path / "export")
    config = _train_config(2)
    config.train.checkpoint_every = 1
    config.model.init_weights = str(start)
    config.optim.learning_rate = 1e-2  # large steps: p1, p2 far from p0
    (tmp_path / "c.json").write_text(config.to_json())
    workdir = tmp_path / "warm"
    argv = ["train", "--config", str(tmp_path / "c.json"), "--workdir", str(workdir)]
    assert cli.main(argv) == 0
    _assert_ema_debiased(workdir, config)


def _assert_ema_debiased(workdir, config) -> dict:
    """The exported EMA of a 2-step run is (d p1 + p2) / (1 + d); returns p2, flattened.

    EMA after two steps from p0: d^2 p0 + (1 - d)(d p1 + p2); debiased, p0 drops out.
    """
    from colorjax.checkpoint import CheckpointStore
    from colorjax.train.run import load_inference_params
    from colorjax.train.state import abstract_state, make_task

    store = CheckpointStore(workdir, read_only=True, async_save=False)
    try:
        target = abstract_state(make_task(config), jax_single_device())
        p1 = weights.flatten_variables(store.restore(1, target)[0].params)
        p2 = weights.flatten_variables(store.restore(2, target)[0].params)
    finally:
        store.close()
    decay = config.optim.ema_decay
    got = weights.flatten_variables(load_inference_params(workdir)[1]["params"])
    assert sorted(got) == sorted(p1)
    for key in p1:
        expected = (decay * p1[key].astype(np.float64) + p2[key]) / (1.0 + decay)
        np.testing.assert_allclose(got[key], expected, rtol=1e-4, atol=1e-5, err_msg=key)
    return p2


def jax_single_device():
    import jax

    return jax.sharding.SingleDeviceSharding(jax.devices()[0])


def test_steps_below_warmup_warn(finished_run, tmp_path, caplog):
    from colorjax.parallel import make_mesh
    from colorjax.train.loop import train

    config = _train_config(2)
    config.optim.warmup_steps = 10
    with caplog.at_level("WARNING"):
        run = _copy_run(finished_run, tmp_path / "run")
        train(config, run, mesh=make_mesh(1), allow_config_change=True)
    assert "below optim.warmup_steps=10" in caplog.text


def test_export_defaults_and_colorize_by_name_through_its_manifest(
    finished_run, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLORJAX_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    rc, out, _ = _main(["weights", "export", "--workdir", str(finished_run)], capsys)
    assert rc == 0 and "--manifest" in out
    # The name defaults to the work dir's, the output folder to the current one.
    (entry,) = weights.load_manifest(tmp_path / "manifest.json")["weights"]
    assert entry["name"] == "run" and (tmp_path / "run.safetensors").is_file()
    assert entry["training_command"].startswith("colorjax train --config")
    assert "colorjax weights export" in entry["training_command"]
    assert "cpu" in entry["hardware"].lower() and "min wall for 2 steps" in entry["time"]
    photo = tmp_path / "p.png"
    Image.fromarray(_photo(20, 20)).save(photo)
    # colorize without -o writes to ./colorized; the name resolves through the manifest.
    rc, _, err = _main(
        ["colorize", str(photo), "--manifest", "manifest.json", "--weights", "run"], capsys
    )
    assert rc == 0 and "1 written" in err
    assert np.asarray(Image.open(tmp_path / "colorized" / "p.png")).shape == (20, 20, 3)
    rc, out, _ = _main(
        [
            "eval",
            "--manifest",
            "manifest.json",
            "--weights",
            "run",
            "--resolution",
            "32",
            "--out",
            "report",
        ],
        capsys,
    )
    assert rc == 0 and (tmp_path / "report" / "summary.json").is_file()


ROOT = Path(__file__).resolve().parents[1]


def test_presets_resolve_from_any_folder(tmp_path, monkeypatch, capsys):
    from colorjax.config import ConfigError, load_config

    from_repo = load_config(ROOT / "experiments" / "demo_cpu.py")
    monkeypatch.chdir(tmp_path)
    assert load_config("demo_cpu") == from_repo == load_config("demo_cpu.py")
    with pytest.raises(ConfigError, match="demo_cpu") as info:
        load_config("experiments/demo_cpu.py")  # relative to a folder that has no experiments/
    assert str(tmp_path) in str(info.value)
    # A config whose data folder is missing says where relative paths start.
    rc, _, err = _main(["data", "folder:../shared/data/tiny-imagenet/train"], capsys)
    line = _one_error_line(err, "data")
    assert rc == 2 and "relative to the current folder" in line and str(tmp_path) in line


def test_import_from_the_folder_holding_the_clone(tmp_path):
    import subprocess
    import sys

    (tmp_path / "colorjax").symlink_to(ROOT, target_is_directory=True)
    code = "import colorjax; print(colorjax.__version__, colorjax.colorize.__module__)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    import colorjax

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [colorjax.__version__, "colorjax.inference.colorizer"]


def test_version_and_weights_legend(capsys):
    import importlib.metadata

    import colorjax

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"colorjax {colorjax.__version__}"
    assert importlib.metadata.version("colorjax") == colorjax.__version__
    rc, out, _ = _main(["weights", "list"], capsys)
    # One star: the entry used without --weights (not every family's only entry, as before).
    starred = [line.split()[0] for line in out.splitlines() if " * " in line]
    assert rc == 0 and starred == [weights.default_entry().name]
    assert any(line.startswith("* used when no --weights") for line in out.splitlines())


def test_no_backend_or_read_only_noise(finished_run, tmp_path):
    import subprocess
    import sys

    argv = ["eval", "--workdir", str(finished_run), "--resolution", "32", "--limit", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "colorjax.cli", *argv, "--out", str(tmp_path / "e")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Unable to initialize backend" not in proc.stderr
    assert "read only" not in proc.stderr and "WARNING" not in proc.stderr
