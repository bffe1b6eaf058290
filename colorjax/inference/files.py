"""Image files for `colorjax colorize`: expand files, folders and globs; save results atomically."""

from __future__ import annotations

import glob
import io
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from colorjax.data.sources import IMAGE_EXTENSIONS, is_within, list_image_entries
from colorjax.fileio import atomic_write_bytes


def _glob_base(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading parts without wildcards."""
    parts = Path(pattern).parts
    base = list(itertools.takewhile(lambda p: not glob.has_magic(p), parts[:-1]))
    return Path(*base) if base else Path(".")


def expand_inputs(
    inputs: Sequence[str], exclude: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Expand files, folders and globs to (source, relative output stem) pairs plus failures.

    Folder walks never enter `exclude` (the output folder: a second run must not colorize the
    first run's outputs) and skip hidden files (our own temporary files among them); anything
    that is not a regular file (a FIFO would block forever) is reported, not read.
    """
    found: list[tuple[Path, Path]] = []
    failures: list[tuple[str, str]] = []
    exclude = exclude.resolve() if exclude is not None else None

    def skips(base: Path) -> Path | None:
        # A walk that starts inside the output folder (-o is the input folder) cannot tell
        # outputs from inputs; item-by-item checks in run() keep inputs safe there.
        return exclude if exclude is not None and not is_within(base, exclude) else None

    def add_dir(root: Path) -> None:
        files, others = list_image_entries(root, exclude=skips(root))
        found.extend((p, p.relative_to(root)) for p in files)
        failures.extend(
            (str(p), "not a regular file (a FIFO, device or broken symlink); skipped")
            for p in others
        )

    def add_file(path: Path) -> None:
        if path.is_file():
            found.append((path, Path(path.name)))
        else:
            failures.append((str(path), "not a regular file (a FIFO or device); skipped"))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            add_dir(path)
        elif path.exists():
            add_file(path)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                failures.append((item, "no such file or folder, and no file matches the pattern"))
            skip = skips(_glob_base(item))
            for match in matches:
                m = Path(match)
                if skip and is_within(m, skip):
                    continue
                if m.is_dir():
                    add_dir(m)
                elif m.suffix.lower() in IMAGE_EXTENSIONS:
                    add_file(m)
    return found, failures


PROVENANCE_KEY = "colorjax"  # PNG text chunk / JPEG comment naming what made an output


def save_image(rgb: np.ndarray, path: Path, fmt: str, provenance: str | None = None) -> None:
    """Encode uint8 RGB as PNG or JPEG and write it atomically, tagged with its provenance."""
    buf = io.BytesIO()
    if fmt == "jpg":
        extra = {"comment": f"{PROVENANCE_KEY}: {provenance}"} if provenance else {}
        Image.fromarray(rgb).save(buf, format="JPEG", quality=95, **extra)
    else:
        info = None
        if provenance:
            from PIL import PngImagePlugin

            info = PngImagePlugin.PngInfo()
            info.add_text(PROVENANCE_KEY, provenance)
        Image.fromarray(rgb).save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(path, buf.getvalue())


def read_provenance(path: Path) -> str | None:
    """The provenance `save_image` wrote into an output, or None (not ours, or unreadable)."""
    try:
        with Image.open(path) as img:
            if PROVENANCE_KEY in img.info:
                return str(img.info[PROVENANCE_KEY])
            comment = img.info.get("comment", b"")
            text = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment
            prefix = f"{PROVENANCE_KEY}: "
            return text[len(prefix) :] if text.startswith(prefix) else None
    except (OSError, ValueError):
        return None
