"""Colorize photos of any size with one model: the Colorizer, its tuned defaults, `colorize`."""

from __future__ import annotations

import functools
import os
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from PIL import Image

from colorjax import data
from colorjax.errors import ConfigError
from colorjax.inference.hints import colorize_with_hints
from colorjax.inference.predict import (
    DEFAULT_BUCKET_FRACTIONS,
    DEFAULT_TEMPERATURE,
    _check_finite_prediction,
    _check_working_size,
    _finish_chunk,
    _luminance_chunk,
    _model_stride,
    _predict_bucket,
    _round_up,
    _run_chunked,
    bucket_shape,
    check_resize,
    check_temperature,
    resized_shapes,
)

ImageLike = np.ndarray | Image.Image | str | os.PathLike | bytes
WeightsLike = None | str | os.PathLike | tuple


class Colorizer:
    """Colorize photos of any size with one model, reusing compiled kernels across photos."""

    def __init__(
        self,
        model: Any,
        variables: Any,
        working_size: int,
        *,
        batch_size: int = 1,
        bucket_fractions: Sequence[float] = DEFAULT_BUCKET_FRACTIONS,
        temperature: float = DEFAULT_TEMPERATURE,
        mesh: Any = None,
        resize: str = "fit",
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.resize = check_resize(resize)
        self.model = model
        # With a mesh, every batch is split over its 'data' axis (the weights replicated):
        # one jitted call runs on all devices.
        self._batch_sharding = None
        if mesh is not None and mesh.devices.size > 1:
            from colorjax.parallel import data_sharding, replicated

            if batch_size % mesh.devices.size:
                raise ConfigError(
                    f"batch_size {batch_size} does not split over the {mesh.devices.size} "
                    f"devices of the mesh; use a multiple of {mesh.devices.size}"
                )
            variables = jax.device_put(variables, replicated(mesh))
            self._batch_sharding = data_sharding(mesh)
        self.variables = jax.device_put(variables)
        self.working_size = _check_working_size(working_size)
        self.stride = _model_stride(model)
        self.batch_size = int(batch_size)
        self.bucket_fractions = tuple(float(f) for f in bucket_fractions)
        self.temperature = check_temperature(temperature)
        bucket_shape(1, 1, self.working_size, self.stride, self.bucket_fractions)  # validate
        self._pad_to = _round_up(self.working_size, self.stride)
        self._buckets_used: set[tuple[int, int]] = set()

    @property
    def num_compilations(self) -> int:
        """Number of distinct network input shapes this colorizer has run (one compile each)."""
        return len(self._buckets_used)

    def bucket_for(self, height: int, width: int) -> tuple[int, int]:
        """Return the padded working-size shape a photo of height x width is predicted at."""
        return self._shapes(height, width)[1]

    def small_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) a photo of height x width is resized to before padding into its bucket."""
        return self._shapes(height, width)[0]

    def _shapes(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(resized shape, bucket shape) of a photo under this colorizer's resize mode."""
        args = (self.working_size, self.stride, self.bucket_fractions, self.resize)
        return resized_shapes(height, width, *args)

    def __call__(self, image: ImageLike) -> np.ndarray:
        """Colorize one image (array, PIL image or path) to uint8 RGB of the same size."""
        return self.colorize(image)

    def colorize(self, image: ImageLike) -> np.ndarray:
        """Colorize one image (array, PIL image or path) to uint8 RGB of the same size."""
        ((_, result),) = list(self.colorize_many([(0, image)]))
        return result

    def colorize_many(
        self, items: Iterable[tuple[Hashable, ImageLike]], *, with_gray: bool = False
    ) -> Iterator[tuple[Hashable, Any]]:
        """Colorize (key, image) pairs, batching photos by bucket; yields (key, rgb) in any order.

        With with_gray=True each result is (colour, gray): gray is the input's luminance
        rendered as neutral RGB (ab = 0), as shown on the left of a --compare image.
        """
        pending: dict[tuple[int, int], list] = {}
        for key, image in items:
            rgb = data.decode_image(image)
            bucket = self.bucket_for(rgb.shape[0], rgb.shape[1])
            group = pending.setdefault(bucket, [])
            group.append((key, rgb, self._prepare(rgb, bucket)))
            if len(group) == self.batch_size:
                yield from self._flush(bucket, pending.pop(bucket), with_gray)
        for bucket, group in list(pending.items()):
            yield from self._flush(bucket, group, with_gray)

    def _placed(self, l_batch: np.ndarray) -> Any:
        """The batch on the device(s): split over the mesh's 'data' axis when there is one."""
        if self._batch_sharding is None:
            return l_batch
        return jax.device_put(l_batch, self._batch_sharding)

    def predict_small(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(normalised L, normalised ab) at working size for photos of one size (video frames).

        The first half of `colorize`: what the network sees and predicts, before ab is resized
        to full resolution and joined with the photo's L (`finish`). Frames of one size share
        one bucket; they run in batches of `batch_size`.
        """
        height, width = frames[0].shape[:2]
        bucket = self.bucket_for(height, width)
        prepared = [self._prepare(rgb, bucket) for rgb in frames]
        out = []
        for start in range(0, len(prepared), self.batch_size):
            group = prepared[start : start + self.batch_size]
            l_batch = np.stack([p[0] for p in group])
            if len(group) < self.batch_size:
                extra = self.batch_size - len(group)
                l_batch = np.concatenate([l_batch, np.repeat(l_batch[-1:], extra, axis=0)])
            self._buckets_used.add(bucket)
            ab, finite = _predict_bucket(
                self.model, self.variables, self._placed(l_batch), self._pad_to, self.temperature
            )
            _check_finite_prediction(finite, list(range(start, start + len(group))))
            ab = np.asarray(ab)
            for i, (l_pad, (h, w)) in enumerate(group):
                out.append((l_pad[:h, :w, 0], ab[i, :h, :w]))
        return out

    def finish(self, rgb: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
        """`colorize`'s second half: ab (h, w, 2) upsampled, joined with rgb's L, gamut-fit."""
        h, w = ab_small.shape[:2]
        padded = np.zeros((self._pad_to, self._pad_to, 2), np.float32)
        padded[:h, :w] = ab_small
        out = _run_chunked(
            _finish_chunk,
            rgb,
            padded,
            full_hw=np.asarray(rgb.shape[:2], np.int32),
            small_hw=np.asarray((h, w), np.int32),
            with_gray=False,
        )
        return out.reshape(rgb.shape)

    def _prepare(self, rgb: np.ndarray, bucket: tuple[int, int]) -> tuple:
        """Compute full-resolution L, resize it to working size and edge-pad it to the bucket."""
        height, width = rgb.shape[:2]
        l_full = _run_chunked(_luminance_chunk, rgb).reshape(height, width)
        h, w = self.small_shape(height, width)
        l_small = l_full
        if (h, w) != (height, width):
            # Pillow's bilinear filter widens with the reduction factor (antialiased), like
            # jax.image.resize(antialias=True) in predict_rgb; done on the host so that the
            # many full-resolution sizes never reach the compiler.
            pil = Image.fromarray(l_full.astype(np.float32))  # float32 2-D -> mode "F"
            l_small = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR), np.float32)
        l_pad = np.pad(l_small, ((0, bucket[0] - h), (0, bucket[1] - w)), mode="edge")
        return l_pad[..., None], (h, w)

    def _flush(self, bucket: tuple[int, int], group: list, with_gray: bool) -> Iterator[tuple]:
        """Run the network on one bucket batch and finish every photo at full resolution."""
        l_batch = np.stack([prepared[0] for _, _, prepared in group])
        if l_batch.shape[0] < self.batch_size:
            # A fixed batch size keeps a partly filled batch from compiling a new shape.
            extra = self.batch_size - l_batch.shape[0]
            l_batch = np.concatenate([l_batch, np.repeat(l_batch[-1:], extra, axis=0)])
        self._buckets_used.add(bucket)
        ab, finite = _predict_bucket(
            self.model, self.variables, self._placed(l_batch), self._pad_to, self.temperature
        )
        _check_finite_prediction(finite, [key for key, _, _ in group])
        for i, (key, rgb, (_, small_hw)) in enumerate(group):
            out = _run_chunked(
                _finish_chunk,
                rgb,
                ab[i],
                full_hw=np.asarray(rgb.shape[:2], np.int32),
                small_hw=np.asarray(small_hw, np.int32),
                with_gray=with_gray,
            )
            shape = rgb.shape
            if with_gray:
                yield key, (out[0].reshape(shape), out[1].reshape(shape))
            else:
                yield key, out.reshape(shape)


def as_pretrained(weights: WeightsLike = None, manifest: str | os.PathLike | None = None) -> Any:
    """(model, variables, meta) for a name, a path, None (the default) or such a tuple."""
    from colorjax.inference.pretrained import load_pretrained
    from colorjax.weights.loader import Pretrained

    if isinstance(weights, tuple):
        if len(weights) != 3 or not isinstance(weights[2], dict):
            raise ConfigError(
                "weights tuple must be (model, variables, meta) as returned by load_pretrained"
            )
        return Pretrained(*weights)
    if weights is None:
        return load_pretrained(None, family="colornet", manifest=manifest)
    return load_pretrained(os.fspath(weights), manifest=manifest)


def make_colorizer(
    model: Any,
    variables: Any,
    meta: dict,
    *,
    working_size: int | None = None,
    temperature: float | None = None,
    batch_size: int = 1,
    mesh: Any = None,
    resize: str | None = None,
) -> Colorizer:
    """A Colorizer with the weights' tuned defaults (meta) unless the caller overrides them.

    working_size is DeOldify's "render factor": the network's input size (longer side);
    temperature is the annealed-mean T of classification models (lower: more saturated);
    the resize mode ('fit' or 'stretch') is the one the weights record (official DDColor's
    inference stretches to a square).
    """
    return Colorizer(
        model,
        variables,
        working_size if working_size is not None else meta["working_size"],
        batch_size=batch_size,
        temperature=temperature if temperature is not None else default_temperature(meta),
        mesh=mesh,
        resize=resize or str(meta.get("resize") or "fit"),
    )


def default_temperature(meta: dict) -> float:
    """The annealed-mean temperature recorded with the weights (tuned), else Zhang et al.'s."""
    return float(meta.get("temperature") or DEFAULT_TEMPERATURE)


@functools.lru_cache(maxsize=4)
def _cached_colorizer(
    weights: str | None, working_size: int | None, temperature: float | None
) -> Colorizer:
    """Load named weights once per process so repeated colorize calls reuse compiled kernels."""
    model, variables, meta = as_pretrained(weights)
    return make_colorizer(
        model, variables, meta, working_size=working_size, temperature=temperature
    )


def colorize(
    image: ImageLike,
    weights: WeightsLike = None,
    *,
    working_size: int | None = None,
    temperature: float | None = None,
    hints: Sequence[Any] | None = None,
    hint_radius: int = 2,
) -> np.ndarray:
    """Colorize an array (gray, RGB, RGBA), PIL image or path to H x W x 3 uint8 RGB.

    working_size (render factor) and temperature default to the values tuned for the weights.
    `hints` [(x, y, (r, g, b)), ...] in original-image pixels guide models that take them
    (zhang-siggraph17); `hint_radius` is the half-width of each hint square in working pixels.
    """
    if isinstance(weights, tuple):
        model, variables, meta = as_pretrained(weights)
        colorizer = make_colorizer(
            model, variables, meta, working_size=working_size, temperature=temperature
        )
    else:
        key = None if weights is None else os.fspath(weights)
        colorizer = _cached_colorizer(key, working_size, temperature)
    if hints is not None:
        return colorize_with_hints(colorizer, image, hints, hint_radius)
    return colorizer(image)
