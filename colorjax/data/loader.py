"""Grain input pipeline: sharded, shuffled, augmented, resumable batches of uint8 RGB."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from colorjax.color import gray_by_max_chroma
from colorjax.data.decode import (
    DEFAULT_RATIO,
    DEFAULT_SCALE,
    decode_pil,
    preprocess_eval,
    preprocess_train,
    thumbnail_max_chroma,
)
from colorjax.data.sources import Source
from colorjax.errors import (
    ColorjaxError,
    ConfigError,
    DataSourceError,
    MissingDependencyError,
    ShardingError,
)

try:
    import grain
except ImportError as _err:  # one clear error instead of a traceback deep in an import chain
    raise MissingDependencyError(
        f"the data loader needs Grain ({_err}); install it with `pip install grain`, or on a "
        "machine without network carry wheels: `bash benchmarks/fetch_wheels.sh` here, then "
        "`bash benchmarks/device_run.sh` there installs them (see README 'Running on a GPU')"
    ) from _err

logger = logging.getLogger(__name__)

STATE_VERSION = 1
WORKER_TYPES = ("thread", "process")
_SKIP_BAD = "unreadable"
_SKIP_GRAY = "gray"


class _Prepare:
    """Per-record work in the loader workers: pick, read, decode, filter, crop.

    A bad image never raises: it becomes a skip marker, so the pipeline keeps going.
    """

    def __init__(
        self,
        source: Source,
        image_size: int,
        train: bool,
        seed: int,
        shard: range,
        drop_gray_threshold: float | None,
        cache_bytes: int = 0,
    ):
        self.source = source
        self.image_size = image_size
        self.train = train
        self.seed = seed
        self.shard = shard
        self.shard_len = len(shard)
        self._perms: dict[int, np.ndarray] = {}
        self.drop_gray_threshold = drop_gray_threshold
        # A random-resized crop may cover ~half the shorter side, so decode at >= 2x the output.
        self.min_side = 2 * image_size if train else image_size
        # Decoded images of small sources (the embedded photos) are kept: decoding a 512 px PNG
        # costs ~20x the crop. The cached image is the one decoding gives, so results match.
        self.cache_limit = cache_bytes
        self._cache: dict[int, tuple[Image.Image | None, float]] = {}
        self._cached_bytes = 0

    def _decode(self, record_index: int) -> tuple[Image.Image | None, float]:
        """Decoded image (None if unreadable) and its max chroma (or 0 if not needed)."""
        hit = self._cache.get(record_index)
        if hit is not None:
            return hit
        try:
            img = decode_pil(self.source[record_index], min_side=self.min_side)
        except (ColorjaxError, OSError) as err:
            logger.warning(
                "skipping unreadable image %s: %s", self.source.describe(record_index), err
            )
            img = None
        chroma = 0.0
        if img is not None and self.drop_gray_threshold is not None:
            chroma = thumbnail_max_chroma(img)
        size = img.size[0] * img.size[1] * 3 if img is not None else 0
        if self._cached_bytes + size <= self.cache_limit:
            self._cache[record_index] = (img, chroma)
            self._cached_bytes += size
        return img, chroma

    def record_index(self, position: int) -> tuple[int, int]:
        """Map a stream position to (record index, epoch): a fresh permutation every epoch."""
        epoch, offset = divmod(int(position), self.shard_len)
        if self.train:
            perm = self._perms.get(epoch)
            if perm is None:
                # Our own per-epoch permutation: Grain's index_shuffle costs ~10 ms per element
                # on shards of a few records (the embedded photos), this is O(n) once per epoch.
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.shard_len)
                self._perms = {
                    epoch: perm,
                    **{e: p for e, p in self._perms.items() if e > epoch - 2},
                }
            offset = int(perm[offset])
        return self.shard[offset], epoch

    def __call__(self, position: int, _element: Any = None) -> dict[str, Any]:
        """Turn a global stream position into {'rgb', 'epoch'} or a skip marker."""
        record_index, epoch = self.record_index(position)
        img, chroma = self._decode(record_index)
        if img is None:
            return {"skip": _SKIP_BAD}
        if self.drop_gray_threshold is not None and gray_by_max_chroma(
            chroma, self.drop_gray_threshold
        ):
            logger.debug("skipping near-gray image %s", self.source.describe(record_index))
            return {"skip": _SKIP_GRAY}
        if self.train:
            # The crop depends only on (seed, record, epoch): identical across worker counts,
            # restarts and resumes, yet different every epoch.
            rng = np.random.default_rng([self.seed, record_index, epoch])
            rgb = preprocess_train(img, self.image_size, rng, DEFAULT_SCALE, DEFAULT_RATIO)
        else:
            rgb = preprocess_eval(img, self.image_size)
        return {"rgb": rgb, "epoch": epoch}


@dataclasses.dataclass(frozen=True)
class _BatchSpec:
    """How _SkipBatchIterDataset batches: shared by the dataset and each of its iterators."""

    batch_size: int
    image_size: int
    drop_remainder: bool
    max_consecutive_skips: int


class _SkipBatchIterDataset(grain.IterDataset):
    """Batch good records and drop skip markers, so every batch is full.

    Each batch carries how many records it skipped, so the main process can count skips made
    in worker processes too.
    """

    def __init__(self, parent: grain.IterDataset, spec: _BatchSpec):
        super().__init__(parent)
        self._spec = spec

    def __iter__(self) -> _SkipBatchIterator:
        return _SkipBatchIterator(self._parent.__iter__(), self._spec)

    def __str__(self) -> str:
        return f"SkipBatchIterDataset(batch_size={self._spec.batch_size})"


class _SkipBatchIterator(grain.DatasetIterator):
    """Iterator of _SkipBatchIterDataset; its state is the parent's (taken between batches)."""

    def __init__(self, parent: grain.DatasetIterator, spec: _BatchSpec):
        super().__init__(parent)
        self._spec = spec

    def _emit(self, rgbs: list[np.ndarray], counts: dict[str, int], epoch: int) -> dict:
        size = self._spec.image_size
        rgb = np.stack(rgbs) if rgbs else np.zeros((0, size, size, 3), np.uint8)
        return {
            "rgb": rgb,
            "skipped_unreadable": np.int64(counts[_SKIP_BAD]),
            "skipped_gray": np.int64(counts[_SKIP_GRAY]),
            "epoch": np.int64(epoch),
        }

    def __next__(self) -> dict:
        rgbs: list[np.ndarray] = []
        counts = {_SKIP_BAD: 0, _SKIP_GRAY: 0}
        epoch = 0
        consecutive = 0
        while len(rgbs) < self._spec.batch_size:
            try:
                element = next(self._parent)
            except StopIteration:
                partial = rgbs and not self._spec.drop_remainder
                if partial or counts[_SKIP_BAD] or counts[_SKIP_GRAY]:
                    # A last partial batch, or an empty one that still reports skip counts.
                    keep = rgbs if not self._spec.drop_remainder else []
                    return self._emit(keep, counts, epoch)
                raise
            if "skip" in element:
                counts[element["skip"]] += 1
                consecutive += 1
                if consecutive > self._spec.max_consecutive_skips:
                    raise DataSourceError(
                        f"{consecutive} records in a row were unreadable or near-gray "
                        f"({counts[_SKIP_BAD]} unreadable, {counts[_SKIP_GRAY]} gray): this "
                        "shard has no usable image; fix the source or lower drop_gray_threshold"
                    )
                continue
            consecutive = 0
            epoch = max(epoch, int(element["epoch"]))
            rgbs.append(element["rgb"])
        return self._emit(rgbs, counts, epoch)

    def get_state(self) -> dict[str, Any]:
        """Return the parent's state; batches are atomic so no partial batch is kept."""
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore the parent's state."""
        self._parent.set_state(state)


class DataIterator(Iterator):
    """Iterator of {'rgb': uint8 (B, S, S, 3)} batches with JSON-serialisable state."""

    def __init__(self, dataset: grain.IterDataset, name: str):
        self._dataset = dataset
        self._it = iter(dataset)
        self.name = name
        self.skipped_unreadable = 0
        self.skipped_gray = 0
        self._reported_unreadable = 0
        self.epoch = 0

    def __iter__(self) -> DataIterator:
        return self

    def _summary(self) -> str:
        return (
            f"{self.name}: skipped {self.skipped_unreadable} unreadable and "
            f"{self.skipped_gray} near-gray images so far"
        )

    def __next__(self) -> dict[str, np.ndarray]:
        while True:
            try:
                batch = next(self._it)
            except StopIteration:
                if self.skipped_unreadable:
                    logger.warning("end of data: %s", self._summary())
                else:
                    logger.info("end of data: %s", self._summary())
                raise
            self.skipped_unreadable += int(batch["skipped_unreadable"])
            self.skipped_gray += int(batch["skipped_gray"])
            epoch = int(batch["epoch"])
            if epoch > self.epoch:
                # Warn when this epoch met new unreadable files; otherwise the summary is
                # debug-level, since a tiny source (the embedded photos) ends an epoch per batch.
                new_bad = self.skipped_unreadable > self._reported_unreadable
                log_fn = logger.warning if new_bad else logger.debug
                log_fn("epoch %d done: %s", self.epoch, self._summary())
                self._reported_unreadable = self.skipped_unreadable
                self.epoch = epoch
            if batch["rgb"].shape[0]:
                return {"rgb": batch["rgb"]}

    def close(self) -> None:
        """Stop worker threads/processes now instead of at garbage collection."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> DataIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_state(self) -> dict[str, Any]:
        """Position of the iterator as a JSON-serialisable dict (for training checkpoints)."""
        state = {
            "version": STATE_VERSION,
            "name": self.name,
            "grain": self._it.get_state(),
            "skipped_unreadable": self.skipped_unreadable,
            "skipped_gray": self.skipped_gray,
            "epoch": self.epoch,
        }
        # Round-trip so callers get plain JSON types (numpy ints would break json.dump later).
        return json.loads(json.dumps(state, default=_json_default))

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a position from get_state(); the next batch is the one that followed it."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ConfigError(
                f"loader state is not from this loader version ({STATE_VERSION}); "
                "restart the data pipeline from scratch"
            )
        self._it.set_state(state["grain"])
        self.skipped_unreadable = int(state["skipped_unreadable"])
        self.skipped_gray = int(state["skipped_gray"])
        self.epoch = int(state["epoch"])


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars found in Grain state to Python numbers."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"loader state holds a non-JSON value of type {type(obj).__name__}")


def _ensure_absl_flags_parsed() -> None:
    """Grain's process workers read absl flags; programs not started by absl.app never parse
    them, which makes Grain raise UnparsedFlagAccessError. Defaults are what we want."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def shard_indices(num_records: int, process_index: int, process_count: int) -> range:
    """Record indices read by one process: a disjoint strided shard; all shards cover the data."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ShardingError(
            f"process_index {process_index} is not in [0, process_count={process_count}); "
            "pass jax.process_index() and jax.process_count()"
        )
    if num_records < process_count:
        raise ShardingError(
            f"{num_records} records cannot be split over {process_count} processes; "
            "use a larger source or fewer processes"
        )
    return range(process_index, num_records, process_count)


def make_loader(
    source: Source,
    *,
    batch_size: int,
    image_size: int,
    train: bool,
    seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
    drop_gray_threshold: float | None = None,
    num_epochs: int | None = None,
    worker_type: str = "thread",
    prefetch: int = 2,
    drop_remainder: bool = True,
    decode_cache_mb: float = 256.0,
) -> DataIterator:
    """Build a resumable iterator of {'rgb': uint8 (batch_size, S, S, 3)} for this process.

    batch_size is per process. Process p reads records p, p + P, p + 2P, ... only. Shards can
    differ by one record, so with a finite num_epochs processes may yield different batch
    counts; multi-host training should use num_epochs=None and stop after a step count.
    num_workers > 0 decodes in `worker_type` workers: 'thread' keeps the exact order of
    num_workers=0; 'process' (Grain mp_prefetch) interleaves per-worker batches, so its order
    (still deterministic and resumable) depends on num_workers. Decoded images are kept in
    memory (per worker) up to decode_cache_mb, which makes small sources nearly free to
    re-read; large sources overflow it and are decoded every time.
    """
    if batch_size < 1 or image_size < 1:
        raise ConfigError(
            f"batch_size and image_size must be positive (got {batch_size}, {image_size})"
        )
    if num_workers < 0 or worker_type not in WORKER_TYPES:
        raise ConfigError(
            f"num_workers must be >= 0 and worker_type one of {WORKER_TYPES} "
            f"(got {num_workers}, {worker_type!r})"
        )
    if num_epochs is not None and num_epochs < 1:
        raise ConfigError(f"num_epochs must be >= 1 or None (forever), got {num_epochs}")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2**32), got {seed}")
    shard = shard_indices(len(source), process_index, process_count)
    # The stream is positions 0, 1, 2, ... (shard_len per epoch); _Prepare maps a position to a
    # record of this process's shard (shuffled per epoch when training) and does all the work.
    ds = grain.MapDataset.range(len(shard)).repeat(num_epochs)
    prepare = _Prepare(
        source,
        image_size,
        train,
        seed,
        shard,
        drop_gray_threshold,
        cache_bytes=int(decode_cache_mb * 2**20),
    )
    ds = ds.map_with_index(prepare)
    if num_workers > 0 and worker_type == "thread":
        read = grain.ReadOptions(
            num_threads=num_workers, prefetch_buffer_size=prefetch * batch_size
        )
    elif num_workers > 0:
        # Inside each worker process one reader thread overlaps file reads with decoding.
        read = grain.ReadOptions(num_threads=1, prefetch_buffer_size=batch_size)
    else:
        # Synchronous: everything runs in the calling thread (simplest, for tests and debugging).
        read = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    it_ds = ds.to_iter_dataset(read)
    # Filtering happens before batching, so batches stay full and the state stays exact.
    it_ds = _SkipBatchIterDataset(
        it_ds, _BatchSpec(batch_size, image_size, drop_remainder, len(shard))
    )
    if num_workers > 0 and worker_type == "process":
        options = grain.MultiprocessingOptions(
            num_workers=num_workers, per_worker_buffer_size=prefetch
        )
        _ensure_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(options)
    return DataIterator(it_ds, source.name)
