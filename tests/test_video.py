"""Video: streamed colorize, temporal smoothing measured on pans of real photos, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("cv2")

import colorjax  # noqa: E402
from colorjax import cli  # noqa: E402
from colorjax.inference import make_colorizer  # noqa: E402
from colorjax.inference.temporal import TemporalSmoother, motion_compensated_change  # noqa: E402
from colorjax.inference.video import VideoError, colorize_clip, probe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BSDS = ROOT.parent / "shared" / "data" / "bsds500" / "test"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H, FPS = 240, 160, 12


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", *args], check=True, timeout=120)


def write_clip(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    """Frames (uint8 RGB) encoded nearly losslessly with libx264."""
    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, quality=10, macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def read_clip(path: Path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(raw, np.uint8).reshape(h, w, 3) for raw in reader]


def pan_frames() -> list[np.ndarray]:
    """16 frames of a slow pan across one real photo, a hard cut, 8 frames across another."""
    a = np.asarray(Image.open(BSDS / "118031.jpg").convert("RGB"))
    b = np.asarray(Image.open(BSDS / "100007.jpg").convert("RGB"))
    return [a[40 : 40 + H, 10 + 4 * t : 10 + 4 * t + W] for t in range(16)] + [
        b[20 : 20 + H, 5 + 4 * t : 5 + 4 * t + W] for t in range(8)
    ]


def smooth_texture(shape: tuple[int, int], seed: int) -> np.ndarray:
    """L in [20, 80] with structure at several pixels' scale: what optical flow can follow."""
    import cv2

    noise = np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)
    field = cv2.GaussianBlur(noise, (0, 0), 2.5)
    field = (field - field.min()) / (field.max() - field.min())
    return (20 + 60 * field).astype(np.float32)


@pytest.fixture(scope="module")
def colorizer():
    model, variables, meta = colorjax.load_pretrained()
    return make_colorizer(model, variables, meta, working_size=128, batch_size=4)


@pytest.fixture(scope="module")
def with_audio(tmp_path_factory) -> Path:
    """FFmpeg's test pattern with a tone, at an odd size (161 x 97), 2 s at 10 fps."""
    folder = tmp_path_factory.mktemp("clips")
    path = folder / "pattern.mkv"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=161x97:rate=10", "-f", "lavfi",
        "-i", "sine=frequency=440:sample_rate=22050", "-t", "2", "-c:v", "libx264",
        "-pix_fmt", "yuv444p", "-c:a", "libopus", str(path),
    )  # fmt: skip
    return path


def audio_packets(path: Path) -> list[str]:
    """Size and MD5 of every audio packet, read without decoding (FFmpeg's framemd5)."""
    proc = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(path), "-map", "0:a", "-c", "copy"]
        + ["-f", "framemd5", "-"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    packets = [line for line in proc.stdout.splitlines() if line and not line.startswith("#")]
    return [",".join(p.split(",")[-2:]) for p in packets]  # size, md5 (timestamps may shift)


@pytest.mark.skipif(not BSDS.is_dir(), reason="needs ../shared/data/bsds500 (real photos)")
def test_smoothing_cuts_flicker_3x_on_a_pan_and_keeps_colour_and_psnr(colorizer, tmp_path):
    truth = pan_frames()
    src = write_clip(tmp_path / "pan.mp4", truth)
    reports = {
        s: colorize_clip(src, tmp_path / f"out{s}.mp4", colorizer, smoothing=s, measure=True)
        for s in (0.0, 0.8)
    }
    plain, smooth = reports[0.0], reports[0.8]
    assert plain.cuts == smooth.cuts == [16]  # the hard cut, and nothing in the pans
    assert smooth.flicker * 3 <= plain.flicker, (plain.flicker, smooth.flicker)
    assert smooth.colorfulness >= 0.97 * plain.colorfulness

    # PSNR against the true colour frames, read back from the encoded outputs.
    def psnr(path: Path) -> float:
        from colorjax import metrics

        out = np.stack(read_clip(path)).astype(np.float32)
        return float(np.mean(metrics.psnr(out, np.stack(truth).astype(np.float32))))

    assert psnr(tmp_path / "out0.8.mp4") >= psnr(tmp_path / "out0.0.mp4") - 0.05


def test_smoother_follows_motion_and_resets_at_cuts():
    rng = np.random.default_rng(0)
    texture = smooth_texture((64, 96), seed=0)
    smoother = TemporalSmoother(strength=0.8)
    ab0 = np.zeros((48, 64, 2), np.float32) + 10.0
    first = smoother(texture[:48, :64], ab0)
    np.testing.assert_array_equal(first, ab0)  # nothing to carry yet
    moved = smoother(texture[:48, 2:66], ab0 + 20.0)  # a 2-pixel pan, new prediction +20
    assert 10.0 < float(np.median(moved)) < 20.0  # pulled back toward the carried colour
    other = rng.uniform(0, 100, (48, 64)).astype(np.float32)
    assert np.array_equal(smoother(other, ab0 + 50.0), ab0 + 50.0)  # a cut: plain prediction
    assert smoother.cuts == [2]
    with pytest.raises(Exception, match=r"strength must be in \[0, 1\)"):
        TemporalSmoother(strength=1.0)


def test_flicker_measure_sees_colour_change_not_motion():
    l_full = smooth_texture((70, 100), seed=1)
    ab_full = np.stack([l_full - 50, 50 - l_full], -1)  # colour fixed to the texture
    prev_l, prev_ab = l_full[:60, :90], ab_full[:60, :90]
    cur_l, cur_ab = l_full[3:63, 4:94], ab_full[3:63, 4:94]  # pure motion
    assert motion_compensated_change(prev_l, prev_ab, cur_l, cur_ab) < 1.0
    shifted = cur_ab + np.array([6.0, 8.0], np.float32)  # a global colour jump of |10|
    assert 9.0 < motion_compensated_change(prev_l, prev_ab, cur_l, shifted) < 11.0


def test_frames_rate_size_and_audio_are_kept(colorizer, with_audio, tmp_path):
    out = tmp_path / "pattern.mkv"
    report = colorize_clip(with_audio, out, colorizer, progress=False)
    src_info, out_info = probe(with_audio), probe(out)
    assert (out_info.width, out_info.height) == (161, 97) == (src_info.width, src_info.height)
    assert out_info.fps == src_info.fps == 10
    assert len(read_clip(out)) == len(read_clip(with_audio)) == report.frames == 20
    assert out_info.audio
    packets = audio_packets(with_audio)
    assert len(packets) > 10 and audio_packets(out) == packets  # copied, not re-encoded


def test_frames_are_colorized_as_photos_are(colorizer):
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    ((l_norm, ab),) = colorizer.predict_small([frame])
    np.testing.assert_array_equal(colorizer.finish(frame, ab), colorizer.colorize(frame))
    assert l_norm.shape == ab.shape[:2]


def test_a_10_bit_source_colorizes(colorizer, tmp_path):
    src = tmp_path / "ten.mp4"
    try:
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-t", "1", "-c:v", "libx264",
               "-pix_fmt", "yuv420p10le", str(src))  # fmt: skip
    except subprocess.CalledProcessError:
        pytest.skip("this FFmpeg's libx264 has no 10-bit support")
    report = colorize_clip(src, tmp_path / "out.mp4", colorizer, progress=False)
    assert report.frames == 10 and report.size == (96, 64)


def test_rotation_metadata_gives_upright_output(colorizer, tmp_path):
    plain = write_clip(tmp_path / "plain.mp4", [np.zeros((96, 160, 3), np.uint8)] * 3, fps=10)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert (info.width, info.height) == (96, 160)  # as displayed
    out = tmp_path / "out.mp4"
    colorize_clip(rotated, out, colorizer, progress=False)
    assert (probe(out).width, probe(out).height) == (96, 160)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("text", "not a readable video"),
        ("audio-only", r"has no video stream \(only Audio\)"),
        ("truncated", "not a readable video"),
    ],
)
def test_bad_videos_get_one_clear_error_and_leave_nothing(colorizer, tmp_path, make, message):
    src = tmp_path / "bad.mp4"
    if make == "text":
        src.write_text("not a video")
    elif make == "audio-only":
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "1", str(src))
    else:
        whole = write_clip(tmp_path / "whole.mp4", [np.zeros((32, 32, 3), np.uint8)] * 5)
        src.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out" / "bad.mp4"
    out.parent.mkdir()
    with pytest.raises(VideoError, match=message):
        colorize_clip(src, out, colorizer, progress=False)
    assert list(out.parent.iterdir()) == []


def test_cli_colorizes_a_clip_reports_and_notes_videos_in_folders(with_audio, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((32, 48, 3), 120, np.uint8)).save(folder / "a.png")
    (folder / "clip.mp4").write_bytes(with_audio.read_bytes())
    out = tmp_path / "out"
    argv = ["colorize", str(with_audio), str(folder), "-o", str(out), "--report"]
    assert cli.main([*argv, "--working-size", "64"]) == 0
    err = capsys.readouterr().err
    assert "a video inside a folder is not colorized with its photos" in err
    assert "20 frames at 10 fps" in err and "flicker" in err
    assert (out / "pattern.mkv").is_file() and (out / "a.png").is_file()
    assert (out / "pattern.mkv.report.json").is_file()
    assert cli.main([*argv, "--working-size", "64"]) == 0  # existing outputs are skipped
    assert "skip" in capsys.readouterr().err


def test_a_kill_mid_video_leaves_no_final_file(with_audio, tmp_path):
    long = tmp_path / "long.mp4"
    ffmpeg("-stream_loop", "20", "-i", str(with_audio), "-c:v", "libx264", "-an", str(long))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorjax.cli", "colorize", str(long), "-o", str(out)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not any(out.glob(".long.partial-*")):  # encoding has started
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "long.mp4").exists()


def test_frame_batches_split_over_devices_give_the_same_video(with_audio, tmp_path, worker_env):
    one = tmp_path / "one.mkv"
    colorjax.colorize_video(with_audio, one, working_size=64, batch_size=2, progress=False)
    two = tmp_path / "two.mkv"
    code = (
        "import jax, colorjax\n"
        "assert jax.device_count() == 2\n"
        f"r = colorjax.colorize_video({str(with_audio)!r}, {str(two)!r}, working_size=64,\n"
        "                           batch_size=2, progress=False)\n"
        "print(r.frames)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=worker_env(2), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "20"
    a, b = np.stack(read_clip(one)).astype(int), np.stack(read_clip(two)).astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_a_clip_cut_short_keeps_what_decodes_and_says_so(colorizer, tmp_path):
    rng = np.random.default_rng(5)
    noise = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(24)]
    whole = write_clip(tmp_path / "whole.mp4", noise)  # every frame carries data
    fast = tmp_path / "fast.mp4"
    ffmpeg("-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(fast))  # index first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size * 6 // 10])
    report = colorize_clip(cut, tmp_path / "out.mp4", colorizer, progress=False)
    assert 0 < report.frames < 24
    assert f"decoded {report.frames} of the 24 frames" in report.warning


@pytest.mark.parametrize("suffix", [".mov", ".avi", ".webm"])
def test_every_container_round_trips(colorizer, tmp_path, suffix):
    src = tmp_path / f"clip{suffix}"
    codec = {".webm": "libvpx-vp9", ".avi": "mpeg4", ".mov": "libx264"}[suffix]
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=8", "-t", "1", "-c:v", codec, str(src))
    out = tmp_path / "out" / src.name
    out.parent.mkdir()
    report = colorize_clip(src, out, colorizer, progress=False)
    assert report.frames == 8 and len(read_clip(out)) == 8
    assert (probe(out).width, probe(out).height, probe(out).fps) == (64, 48, 8)
