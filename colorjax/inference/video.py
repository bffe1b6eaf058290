"""Colorize videos: frames streamed through FFmpeg, smoothed across time, audio copied.

FFmpeg comes with the imageio-ffmpeg wheel (a static binary, no system install; PyAV would
tie colorjax to libav's Python API and its build for each platform; imageio-ffmpeg is a pipe
to the ffmpeg program, which also muxes the audio untouched). Frames are decoded in a
reader thread, batched through the jitted model, smoothed along the motion
(``temporal.TemporalSmoother``) and joined with each frame's exact L, then encoded in a
writer thread, so the three stages overlap and the slowest sets the pace; the clip is never
held in memory. The output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from colorjax.errors import ConfigError, ImageDecodeError, MissingDependencyError
from colorjax.inference.temporal import (
    DEFAULT_CUT_THRESHOLD,
    DEFAULT_STRENGTH,
    TemporalSmoother,
    motion_compensated_change,
)

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
# Codec and quality (imageio-ffmpeg's 0-10 scale) by output container.
DEFAULT_CODECS = {".webm": "libvpx-vp9", ".avi": "mpeg4"}
DEFAULT_CODEC = "libx264"
DEFAULT_QUALITY = 8.0
_END = object()


class VideoError(ImageDecodeError):
    """A video that cannot be colorized as given (unreadable, no video stream, cut short)."""


def _ffmpeg() -> Any:
    """imageio_ffmpeg, or one clear error naming the extra that brings it."""
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise MissingDependencyError(
            "video colorization needs imageio-ffmpeg and OpenCV: pip install 'colorjax[video]'"
        ) from err
    return imageio_ffmpeg


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What FFmpeg says of a video: display size (after rotation), frame rate, length, audio."""

    width: int
    height: int
    fps: float
    frames: int  # duration x frame rate, as the container announces them (an estimate)
    duration: float
    audio: bool
    rotate: int


def is_video(path: str | os.PathLike) -> bool:
    """Whether a path names a video by its extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header; VideoError with the cause for anything FFmpeg cannot use."""
    ffmpeg = _ffmpeg()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    streams = _stream_lines(ffmpeg.get_ffmpeg_exe(), path)
    if streams is not None and not any(" Video: " in line for line in streams):
        kinds = sorted({line.split(": ")[1] for line in streams if line.count(": ") >= 2})
        raise VideoError(
            f"{path}: has no video stream (only {', '.join(kinds) or 'no streams'}); pass a "
            "video file"
        )
    try:
        reader = ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
    except (OSError, RuntimeError, StopIteration) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise VideoError(
            f"{path}: not a readable video ({reason}); check the file plays, or re-encode it"
        ) from err
    width, height = (int(v) for v in meta["size"])
    fps = float(meta.get("fps") or 0.0)
    if fps <= 0 or not np.isfinite(fps):
        raise VideoError(f"{path}: FFmpeg reports no frame rate; re-encode it at a fixed rate")
    # From the container's duration (cheap; counting would decode the whole file).
    frames = int(round(float(meta.get("duration") or 0.0) * fps))
    return VideoInfo(
        width=width,
        height=height,
        fps=fps,
        frames=int(frames),
        duration=float(meta.get("duration") or 0.0),
        audio=bool(meta.get("audio_codec")),
        rotate=int(meta.get("rotate") or 0),
    )


def _stream_lines(exe: str, path: Path) -> list[str] | None:
    """The 'Stream #...' lines FFmpeg prints for a file (None when it cannot open it)."""
    import subprocess

    proc = subprocess.run(
        [exe, "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
    lines = [
        line.strip() for line in proc.stderr.splitlines() if line.strip().startswith("Stream #")
    ]
    return lines if lines else None


def _read_frames(path: Path, info: VideoInfo, out: queue.Queue, stop: threading.Event) -> None:
    """Reader thread: decoded RGB frames into `out`, then _END (or the exception)."""
    try:
        reader = _ffmpeg().read_frames(str(path))
        next(reader)
        shape = (info.height, info.width, 3)
        for raw in reader:
            if stop.is_set():
                break
            out.put(np.frombuffer(raw, np.uint8).reshape(shape))
        reader.close()
        out.put(_END)
    except BaseException as err:  # noqa: BLE001 - handed to the main thread
        out.put(err)


def _batches(frames: queue.Queue, size: int, src: Path) -> Iterator[list[np.ndarray]]:
    """Group the reader's frames into lists of up to `size`; a decoding failure -> VideoError."""
    batch: list[np.ndarray] = []
    seen = 0
    while True:
        item = frames.get()
        if item is _END:
            break
        if isinstance(item, BaseException):
            if isinstance(item, (VideoError, KeyboardInterrupt)):
                raise item
            reason = str(item).strip().splitlines()[-1] if str(item).strip() else repr(item)
            raise VideoError(
                f"{src}: decoding failed after {seen} frames ({reason}); check the file plays"
            ) from item
        seen += 1
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _temporary_path(dst: Path) -> Path:
    """A hidden name beside dst with dst's suffix (FFmpeg picks the container by it)."""
    return dst.with_name(f".{dst.stem}.partial-{os.getpid()}{dst.suffix}")


@dataclasses.dataclass
class VideoReport:
    """What a colorized video came out as, with its temporal measures."""

    source: str
    output: str
    frames: int
    fps: float
    size: tuple[int, int]
    audio: bool
    cuts: list[int]
    seconds: float
    frames_per_second: float
    flicker: float | None = None  # mean motion-compensated |delta ab| per frame pair (CIE ab)
    colorfulness: float | None = None  # mean over frames (Hasler and Suesstrunk)
    colorfulness_input: float | None = None  # the same of the input (the truth for a colour clip)
    psnr: float | None = None  # mean per-frame PSNR against the input (meaningful when in colour)
    warning: str | None = None  # e.g. fewer frames decoded than the container announced

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dataclasses.asdict(self)


def colorize_clip(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    colorizer: Any,
    *,
    smoothing: float = DEFAULT_STRENGTH,
    cut_threshold: float = DEFAULT_CUT_THRESHOLD,
    codec: str | None = None,
    quality: float = DEFAULT_QUALITY,
    measure: bool = False,
    progress: bool = True,
) -> VideoReport:
    """Colorize `src` into `dst` (same frame count, rate, size; audio copied unchanged).

    `colorizer` is an inference Colorizer (its batch size batches frames). smoothing is the
    temporal strength in [0, 1) (0: plain per-frame colour). measure=True adds the flicker
    and colourfulness of the output to the report. Nothing is left at `dst` unless it
    completed; an existing `dst` is the caller's to protect.
    """
    from tqdm.auto import tqdm

    from colorjax import metrics

    src, dst = Path(src), Path(dst)
    info = probe(src)
    smoother = TemporalSmoother(strength=smoothing, cut_threshold=cut_threshold)
    codec = codec or DEFAULT_CODECS.get(dst.suffix.lower(), DEFAULT_CODEC)
    tmp = _temporary_path(dst)
    frames_q: queue.Queue = queue.Queue(maxsize=max(4, 2 * colorizer.batch_size))
    stop = threading.Event()
    reader = threading.Thread(target=_read_frames, args=(src, info, frames_q, stop), daemon=True)
    writer = _Writer(tmp, info, codec, quality, audio_from=src if info.audio else None)
    count, flicker, colourful, colourful_in, psnrs = 0, [], [], [], []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    start = time.perf_counter()
    bar = tqdm(total=info.frames or None, unit="frame", disable=not progress, desc=src.name)
    reader.start()
    try:
        for batch in _batches(frames_q, colorizer.batch_size, src):
            for rgb, (l_norm, ab) in zip(batch, colorizer.predict_small(batch), strict=True):
                l_small = (l_norm + 1.0) * 50.0
                ab = smoother(l_small, ab)
                frame = colorizer.finish(rgb, ab)
                writer.put(frame)
                if measure:
                    lab = _lab(frame)
                    if previous is not None and count not in smoother.cuts:
                        flicker.append(motion_compensated_change(*previous, *lab))
                    previous = lab
                    pair = np.stack([frame, rgb]).astype(np.float32)
                    c_out, c_in = (float(v) for v in metrics.colorfulness(pair))
                    colourful.append(c_out)
                    colourful_in.append(c_in)
                    psnrs.append(float(metrics.psnr(pair[:1], pair[1:])[0]))
                count += 1
                bar.update(1)
        writer.close()
    except BaseException:
        stop.set()
        writer.abort()
        raise
    finally:
        bar.close()
        stop.set()
        _drain(frames_q)
        reader.join(timeout=10)
    if count == 0:
        tmp.unlink(missing_ok=True)
        raise VideoError(f"{src}: no frame could be decoded; check the file plays")
    os.replace(tmp, dst)
    seconds = time.perf_counter() - start
    warning = None
    if info.frames and count < info.frames - max(2, info.frames // 100):
        warning = (
            f"decoded {count} of the {info.frames} frames {src.name} announces: the file is cut "
            "short or damaged; the output holds the frames that decoded"
        )
        logger.debug("%s", warning)  # the caller reports it (report.warning)
    finite = [f for f in flicker if np.isfinite(f)]
    return VideoReport(
        source=str(src),
        output=str(dst),
        frames=count,
        fps=info.fps,
        size=(info.width, info.height),
        audio=info.audio,
        cuts=list(smoother.cuts),
        seconds=seconds,
        frames_per_second=count / max(seconds, 1e-9),
        flicker=float(np.mean(finite)) if finite else None,
        colorfulness=float(np.mean(colourful)) if colourful else None,
        colorfulness_input=float(np.mean(colourful_in)) if colourful_in else None,
        psnr=float(np.mean(psnrs)) if psnrs else None,
        warning=warning,
    )


def colorize_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    weights: Any = None,
    *,
    working_size: int | None = None,
    temperature: float | None = None,
    batch_size: int = 4,
    **options: Any,
) -> VideoReport:
    """Colorize a video file with weights named as for `colorize` (see `colorize_clip`).

    weights: a name, file, run folder or (model, variables, meta); None: the bundled default.
    options: smoothing, cut_threshold, codec, quality, measure, progress. With several
    devices the frame batches are split over all of them (batch_size rounded up to a
    multiple of the device count).
    """
    import jax

    from colorjax.inference.colorizer import as_pretrained, make_colorizer
    from colorjax.parallel import make_mesh

    model, variables, meta = as_pretrained(weights)
    mesh = None
    if jax.local_device_count() > 1 and jax.process_count() == 1:
        mesh = make_mesh()
        batch_size = -(-batch_size // mesh.devices.size) * mesh.devices.size
    colorizer = make_colorizer(
        model,
        variables,
        meta,
        working_size=working_size,
        temperature=temperature,
        batch_size=batch_size,
        mesh=mesh,
    )
    return colorize_clip(src, dst, colorizer, **options)


def _lab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L 0-100, ab CIE) of a uint8 frame, on the host."""
    from colorjax import color

    lab = color.rgb_to_lab_np(rgb.astype(np.float64) / 255.0).astype(np.float32)
    return lab[..., 0], lab[..., 1:]


def _drain(q: queue.Queue) -> None:
    """Empty a queue so a blocked producer can finish."""
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


class _Writer:
    """Encoder thread: frames in through a bounded queue, FFmpeg out, the source's audio muxed."""

    def __init__(
        self, path: Path, info: VideoInfo, codec: str, quality: float, audio_from: Path | None
    ) -> None:
        if not 0 <= quality <= 10:
            raise ConfigError(f"video quality must be 0-10 (imageio-ffmpeg's scale), got {quality}")
        self.path = path
        even = info.width % 2 == 0 and info.height % 2 == 0
        self._gen = _ffmpeg().write_frames(
            str(path),
            (info.width, info.height),
            fps=info.fps,
            codec=codec,
            quality=quality,
            # 4:2:0 chroma needs even sizes; odd ones keep every pixel in 4:4:4.
            pix_fmt_out="yuv420p" if even else "yuv444p",
            macro_block_size=1,
            audio_path=str(audio_from) if audio_from else None,
            audio_codec="copy" if audio_from else None,
            output_params=["-map_metadata", "0"],
        )
        self._gen.send(None)
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is _END:
                return
            if self._error is None:
                try:
                    self._gen.send(np.ascontiguousarray(frame))
                except BaseException as err:  # noqa: BLE001 - reported by put/close
                    self._error = err

    def put(self, frame: np.ndarray) -> None:
        """Queue one frame for encoding (blocks while the encoder is behind)."""
        if self._error is not None:
            raise VideoError(f"encoding {self.path.name} failed: {self._error}")
        self._queue.put(frame)

    def close(self) -> None:
        """Encode what is queued and finish the file."""
        self._queue.put(_END)
        self._thread.join()
        if self._error is not None:
            raise VideoError(f"encoding {self.path.name} failed: {self._error}")
        self._gen.close()

    def abort(self) -> None:
        """Stop and remove the partial file."""
        _drain(self._queue)
        self._queue.put(_END)
        self._thread.join(timeout=30)
        try:
            self._gen.close()
        except Exception:  # noqa: BLE001 - the partial file is removed either way
            logger.debug("closing the encoder after an error failed", exc_info=True)
        self.path.unlink(missing_ok=True)
