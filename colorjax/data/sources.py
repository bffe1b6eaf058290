"""Random-access image sources named by one string: 'embedded', 'folder:PATH' or 'tfds:NAME'."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from colorjax.data.decode import decode_image
from colorjax.data.embedded import EMBEDDED_PHOTOS, embedded_photo_paths
from colorjax.errors import ColorjaxError, DataSourceError

logger = logging.getLogger(__name__)

ACCEPTED_FORMS = (
    "'embedded' (photos shipped with scikit-image), 'folder:PATH' (every image below PATH), "
    "'tfds:NAME[/CONFIG][:VERSION]' (a prepared TFDS data set in ArrayRecord format)"
)
# The one list of file name extensions taken as images (folders, colorize, the prior tool).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
SPLITS = ("train", "validation", "all")
_TFDS_NAME = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_.\-]+)?(:[0-9]+\.[0-9]+\.[0-9]+)?$")


class Source(Sequence):
    """A random-access sequence of records: encoded image bytes or uint8 arrays."""

    name: str = "source"

    def describe(self, index: int) -> str:
        """Name record `index` for warnings (a path, or NAME[split][i])."""
        return f"{self.name}[{index}]"


class FileSource(Source):
    """Image files read as raw bytes; decoding happens in the loader's workers."""

    def __init__(self, name: str, paths: Sequence[str]):
        self.name = name
        self.paths = [os.fspath(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
        with open(self.paths[index], "rb") as f:
            return f.read()

    def describe(self, index: int) -> str:
        """Return the file path of record `index`."""
        return self.paths[index]


class TfdsSource(Source):
    """A TFDS split read through `tfds.data_source` (ArrayRecord, random access, no TF)."""

    def __init__(self, name: str, split: str, data_source: Any, indices: Sequence[int] | None):
        self.name = name
        self.split = split
        self._ds = data_source
        self._indices = list(indices) if indices is not None else None

    def __len__(self) -> int:
        return len(self._indices) if self._indices is not None else len(self._ds)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        real = self._indices[index] if self._indices is not None else index
        record = self._ds[real]
        if not isinstance(record, dict) or "image" not in record:
            raise DataSourceError(
                f"{self.name}: records have no 'image' feature (keys: {sorted(record)}); "
                "use a data set of images"
            )
        return record["image"]

    def describe(self, index: int) -> str:
        """Return NAME[split][index]."""
        return f"{self.name}[{self.split}][{index}]"


def _holdout_rank(key: str, seed: int) -> str:
    """Deterministic pseudo-random rank of one item (stable when other files change)."""
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def split_keys(keys: Sequence[str], split: str, val_fraction: float, seed: int) -> list[int]:
    """Indices of `keys` in `split`: the val_fraction with the lowest hash rank is held out."""
    if split not in SPLITS:
        raise DataSourceError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataSourceError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(keys)
    if split == "all" or val_fraction == 0.0:
        if split == "validation":
            raise DataSourceError(
                "split 'validation' needs val_fraction > 0 (the held-out share of the source)"
            )
        return list(range(n))
    # At least one held-out item (tiny folders), never all of them.
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    ranked = sorted(range(n), key=lambda i: _holdout_rank(keys[i], seed))
    held = set(ranked[:n_val])
    return [i for i in range(n) if (i in held) == (split == "validation")]


def is_within(path: Path, folder: Path) -> bool:
    """Whether path (resolved) is the resolved folder or lies below it."""
    resolved, folder = path.resolve(), folder.resolve()
    return resolved == folder or folder in resolved.parents


def list_image_files(root: Path, exclude: Path | None = None) -> list[Path]:
    """Every image file below root (by extension, any case), sorted by relative path.

    Hidden files and folders (a leading '.': .git, .ipynb_checkpoints) are skipped, and so
    is the folder `exclude` (e.g. an output folder inside the input folder).
    """
    return list_image_entries(root, exclude)[0]


def list_image_entries(root: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(regular image files, image-named entries that are not regular files) below root.

    The second list holds what must not be read but must not vanish unseen either: FIFOs and
    devices (reading one blocks forever) and dangling or self-looping symlinks.
    """
    files, others = [], []
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and not (exclude is not None and is_within(here / d, exclude))
        ]
        for n in names:
            if n.startswith(".") or Path(n).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            (files if (here / n).is_file() else others).append(here / n)

    def key(p: Path) -> str:
        return p.relative_to(root).as_posix()

    return sorted(files, key=key), sorted(others, key=key)


def _folder_source(path: str, split: str, val_fraction: float, seed: int) -> FileSource:
    """Build the source for 'folder:PATH'."""
    root = Path(path).expanduser()
    if not path or not root.is_dir():
        where = "" if root.is_absolute() else f" (relative to the current folder, {Path.cwd()})"
        raise DataSourceError(
            f"folder {path!r} does not exist or is not a directory{where}; pass an existing "
            "folder of images (in a training config: --set data.source=folder:PATH and "
            f"data.eval_source=...). Accepted source forms: {ACCEPTED_FORMS}"
        )
    files = list_image_files(root)
    if not files:
        raise DataSourceError(
            f"folder {path!r} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
            f"add images or pick another source. Accepted source forms: {ACCEPTED_FORMS}"
        )
    rel = [p.relative_to(root).as_posix() for p in files]
    keep = split_keys(rel, split, val_fraction, seed)
    return FileSource(f"folder:{path}", [str(files[i]) for i in keep])


def _embedded_source(split: str, val_fraction: float, seed: int) -> FileSource:
    """Build the source for 'embedded' (scikit-image's bundled colour photos)."""
    paths = embedded_photo_paths()
    if not paths:
        raise DataSourceError(
            "the embedded photos (" + ", ".join(EMBEDDED_PHOTOS) + ") were not found; "
            "install scikit-image (`pip install scikit-image`) or use another source: "
            + ACCEPTED_FORMS
        )
    keep = split_keys([p.name for p in paths], split, val_fraction, seed)
    return FileSource("embedded", [str(paths[i]) for i in keep])


def _tfds_source(
    spec: str, split: str, data_dir: str | None, val_fraction: float, seed: int
) -> TfdsSource:
    """Build the source for 'tfds:NAME[/CONFIG][:VERSION]' through tfds.data_source."""
    name = spec[len("tfds:") :]
    if not _TFDS_NAME.match(name):
        raise DataSourceError(
            f"malformed TFDS spec {spec!r}; write tfds:NAME[/CONFIG][:VERSION], "
            f"e.g. tfds:imagenette/320px-v2. Accepted source forms: {ACCEPTED_FORMS}"
        )
    import tensorflow_datasets as tfds  # imported lazily: slow, and only this form needs it

    # With val_fraction, the held-out part is carved deterministically out of 'train'.
    holdout = val_fraction > 0.0
    tfds_split = "train" if holdout else split
    try:
        ds = tfds.data_source(name, split=tfds_split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise DataSourceError(
            f"TFDS has no data set named {name.split('/')[0].split(':')[0]!r}; check the name "
            "(`tfds.list_builders()`)"
        ) from err
    except Exception as err:  # tfds raises several types for "not prepared / wrong format"
        where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
        raise DataSourceError(
            f"TFDS data set {name!r} split {tfds_split!r} is not prepared in ArrayRecord format "
            f"under {where} ({type(err).__name__}: {str(err).splitlines()[0][:200]}). Downloads "
            f"are off here; prepare it on a machine with TensorFlow and network access with "
            f"`tfds build {name.split(':')[0]} --data_dir {where} --file_format array_record` "
            f"(or tfds.builder({name!r}, data_dir=...).download_and_prepare("
            f"file_format='array_record')), then copy the folder and pass data_dir"
        ) from err
    indices = None
    if holdout:
        indices = split_keys([str(i) for i in range(len(ds))], split, val_fraction, seed)
    return TfdsSource(f"tfds:{name}", split, ds, indices)


def _check_readable(source: Source) -> None:
    """Raise DataSourceError unless at least one record decodes (stops at the first good one)."""
    errors = []
    for i in range(len(source)):
        try:
            decode_image(source[i])
            return
        except (ColorjaxError, OSError) as err:
            errors.append(f"{source.describe(i)}: {err}")
    detail = "; ".join(errors[:3]) + (" ..." if len(errors) > 3 else "")
    raise DataSourceError(
        f"source {source.name!r} has {len(source)} records but no readable image ({detail}); "
        f"fix the files or use another source. Accepted source forms: {ACCEPTED_FORMS}"
    )


def make_source(
    spec: str,
    *,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    check: bool = True,
) -> Source:
    """Open the image source named by spec ('embedded', 'folder:PATH', 'tfds:NAME...')."""
    if not isinstance(spec, str):
        raise DataSourceError(f"source spec must be a string; accepted forms: {ACCEPTED_FORMS}")
    if spec == "embedded":
        source: Source = _embedded_source(split, val_fraction, seed)
    elif spec.startswith("folder:"):
        source = _folder_source(spec[len("folder:") :], split, val_fraction, seed)
    elif spec.startswith("tfds:"):
        dd = os.fspath(data_dir) if data_dir is not None else None
        source = _tfds_source(spec, split, dd, val_fraction, seed)
    else:
        raise DataSourceError(f"unknown data source {spec!r}; accepted forms: {ACCEPTED_FORMS}")
    if len(source) == 0:
        raise DataSourceError(
            f"source {spec!r} split {split!r} is empty; pick another split or source "
            f"({ACCEPTED_FORMS})"
        )
    if check:
        _check_readable(source)
    logger.info("data source %s split %s: %d records", source.name, split, len(source))
    return source
