"""The evaluation protocol: score a colorizer against the grayscale baseline, by numbers and eye.

Protocol (the common ImageNet colorization protocol): every photo is resized so its shorter
side is ``resolution`` and centre-cropped to ``resolution`` x ``resolution``
(``data.preprocess_eval``). Photos whose ground truth is near-gray (largest CIE Lab chroma over
the crop at most ``gray_threshold``) carry no colour to recover; they are left out by default
and counted. The model colorizes the crop's L at its working size (``inference.predict_rgb``),
and every metric is reported for the model and, on the same photos, for the grayscale
baseline: the same L with ab = 0. Metrics come from ``colorjax.metrics.compute_metrics``,
jitted and batched; with several devices the batch is sharded over the mesh's data axis.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from colorjax import __version__, color, data, inference, metrics, parallel
from colorjax.errors import ConfigError, DataSourceError, ImageDecodeError
from colorjax.fileio import atomic_write_bytes

__all__ = [
    "DEFAULT_GRAY_THRESHOLD",
    "DEFAULT_RESOLUTION",
    "EvalResult",
    "evaluate",
    "format_report",
    "run_evaluation",
    "write_outputs",
]

logger = logging.getLogger(__name__)

DEFAULT_RESOLUTION = 256
DEFAULT_GRAY_THRESHOLD = color.GRAY_CHROMA  # the package's one near-gray rule
SUMMARY_FILE = "summary.json"
PER_IMAGE_FILE = "per_image.csv"
CONTACT_SHEET_FILE = "contact_sheet.png"

PredictFn = Callable[[jax.Array], Any]


@dataclass
class EvalResult:
    """Everything one evaluation produced: summary, per-image rows and contact-sheet rows."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    sheet: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


@jax.jit
def _score_batch(pred_u8: jax.Array, true_u8: jax.Array) -> tuple[dict, dict, jax.Array, jax.Array]:
    """Metrics of the prediction and of the gray baseline against the truth, plus max chroma."""
    l_norm, ab_norm = color.rgb_uint8_to_lab_inputs(true_u8)
    baseline = jnp.round(color.lab_inputs_to_rgb(l_norm, jnp.zeros_like(ab_norm)) * 255.0)
    baseline = baseline.astype(jnp.uint8)
    max_chroma = color.max_chroma(color.denormalize_ab(ab_norm))
    model_scores = metrics.compute_metrics(pred_u8, true_u8)
    baseline_scores = metrics.compute_metrics(baseline, true_u8)
    # Hue agreement pools pixels over the data set: per-image counts, summed by the caller.
    model_scores["hue_counts"] = jnp.stack(metrics.hue_counts(pred_u8, true_u8), axis=1)
    baseline_scores["hue_counts"] = jnp.stack(metrics.hue_counts(baseline, true_u8), axis=1)
    return model_scores, baseline_scores, max_chroma, baseline


def _versions() -> dict[str, Any]:
    """Software and hardware the numbers were produced with."""
    import flax

    device = jax.devices()[0]
    return {
        "colorjax": __version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
    }


def _iter_named(images: Iterable[Any]) -> Iterable[tuple[str, Any]]:
    """Yield (name, record) from records or (name, record) pairs."""
    for i, item in enumerate(images):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            yield item
        else:
            yield str(i), item


def run_evaluation(
    model: Any,
    variables: Any,
    meta: dict[str, Any],
    images: Iterable[Any],
    *,
    resolution: int = DEFAULT_RESOLUTION,
    batch_size: int = 16,
    limit: int | None = None,
    gray_threshold: float = DEFAULT_GRAY_THRESHOLD,
    keep_gray: bool = False,
    contact_sheet: int = 0,
    mesh: Any = None,
    predict_fn: PredictFn | None = None,
    progress: bool = False,
    total: int | None = None,
    working_size: int | None = None,
    temperature: float | None = None,
) -> EvalResult:
    """Evaluate a colorizer on images (records or (name, record) pairs); see module docstring."""
    if resolution < 1 or batch_size < 1:
        raise ConfigError(f"resolution and batch_size must be >= 1, got {resolution}, {batch_size}")
    working_size = int(working_size or meta.get("working_size") or resolution)
    temperature = inference.check_temperature(temperature or inference.default_temperature(meta))
    if predict_fn is None:

        def predict_fn(rgb: jax.Array) -> jax.Array:
            return inference.predict_rgb(
                model,
                variables,
                rgb,
                working_size,
                temperature=temperature,
                resize=str(meta.get("resize") or "fit"),  # DDColor's weights: 'stretch'
            )

    if mesh is None and jax.device_count() > 1:
        mesh = parallel.make_mesh()
    n_dev = 1 if mesh is None else int(mesh.devices.size)
    # Every batch has the same padded size, a multiple of the device count: one compile.
    padded = math.ceil(batch_size / n_dev) * n_dev
    sharding = None if mesh is None else parallel.data_sharding(mesh)

    from tqdm import tqdm

    if limit is not None and total is not None:
        total = min(total, limit)
    bar = tqdm(total=total, unit="img", desc="eval", disable=not progress, file=sys.stderr)
    counts = {"seen": 0, "evaluated": 0, "excluded_gray": 0, "gray": 0, "unreadable": 0}
    rows: list[dict[str, Any]] = []
    sheet: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    scores: dict[str, dict[str, list[float]]] = {"model": {}, "baseline": {}}
    hue = {"model": np.zeros((2, 6)), "baseline": np.zeros((2, 6))}  # (hits, totals) per sector

    def flush(names: list[tuple[int, str]], crops: list[np.ndarray]) -> None:
        n = len(crops)
        batch = np.stack(crops + [crops[-1]] * (padded - n))
        true = jax.device_put(batch, sharding) if sharding is not None else jnp.asarray(batch)
        pred = jnp.asarray(predict_fn(true), dtype=jnp.uint8)
        model_m, base_m, max_chroma, baseline = _score_batch(pred, true)
        model_m, base_m = jax.device_get((model_m, base_m))
        max_chroma = np.asarray(max_chroma)
        pred_host = np.asarray(pred) if len(sheet) < contact_sheet else None
        base_host = np.asarray(baseline) if len(sheet) < contact_sheet else None
        for i in range(n):
            is_gray = bool(color.gray_by_max_chroma(max_chroma[i], gray_threshold))
            counts["gray"] += is_gray
            if is_gray and not keep_gray:
                counts["excluded_gray"] += 1
                continue
            counts["evaluated"] += 1
            row: dict[str, Any] = {
                "index": names[i][0],
                "name": names[i][1],
                "gray": int(is_gray),
                "max_chroma": float(max_chroma[i]),
            }
            for prefix, values in (("model", model_m), ("baseline", base_m)):
                hue[prefix] += np.asarray(values["hue_counts"])[i]
                for key in sorted(k for k in values if k != "hue_counts"):
                    value = float(np.asarray(values[key])[i])
                    row[f"{prefix}_{key}"] = value
                    scores[prefix].setdefault(key, []).append(value)
            rows.append(row)
            if len(sheet) < contact_sheet:
                sheet.append((base_host[i], pred_host[i], crops[i]))

    names: list[tuple[int, str]] = []
    crops: list[np.ndarray] = []
    for index, (name, record) in enumerate(_iter_named(images)):
        if limit is not None and index >= limit:
            break
        try:
            rgb = data.decode_image(record)
        except ImageDecodeError as err:
            counts["unreadable"] += 1
            logger.warning("skipping unreadable image %s: %s", name, err)
            bar.update(1)
            continue
        if rgb.shape != (resolution, resolution, 3):
            rgb = data.preprocess_eval(rgb, resolution)
        counts["seen"] += 1
        names.append((index, name))
        crops.append(rgb)
        if len(crops) == batch_size:
            flush(names, crops)
            bar.update(len(crops))
            names, crops = [], []
    if crops:
        flush(names, crops)
        bar.update(len(crops))
    bar.close()
    counts["seen"] += counts["unreadable"]
    if counts["evaluated"] == 0:
        raise DataSourceError(
            f"no photo to evaluate: {counts['seen']} read, {counts['excluded_gray']} near-gray "
            f"(max chroma <= {gray_threshold}), {counts['unreadable']} unreadable; use a source "
            "with colour photos or pass --keep-gray"
        )

    summary = {
        "weights": {k: meta[k] for k in ("name", "model", "path", "workdir") if meta.get(k)},
        "model": {
            **{k: float(np.nanmean(v)) for k, v in scores["model"].items()},
            **metrics.hue_agreement(*hue["model"]),
        },
        "baseline": {
            **{k: float(np.nanmean(v)) for k, v in scores["baseline"].items()},
            **metrics.hue_agreement(*hue["baseline"]),
        },
        "counts": counts,
        "protocol": {
            "resolution": resolution,
            "preprocess": f"resize shorter side to {resolution} (bilinear), centre crop "
            f"{resolution}x{resolution}",
            "working_size": working_size,
            "temperature": temperature,
            "gray_threshold": gray_threshold,
            "gray_rule": "max CIE Lab chroma of the ground-truth crop <= gray_threshold",
            "keep_gray": keep_gray,
            "limit": limit,
            "baseline": "same L, ab = 0",
        },
        "versions": _versions(),
    }
    return EvalResult(summary=summary, rows=rows, sheet=sheet)


def evaluate(
    model: Any,
    variables: Any,
    meta: dict[str, Any],
    images: Iterable[Any],
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a colorizer and return the summary dict (model and baseline metric means)."""
    return run_evaluation(model, variables, meta, images, **kwargs).summary


def contact_sheet_image(sheet: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Stack rows of gray | prediction | truth into one uint8 image."""
    return np.concatenate([np.concatenate(row, axis=1) for row in sheet], axis=0)


def write_outputs(result: EvalResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write summary JSON, per-image CSV and (if any rows) the contact-sheet PNG; return paths."""
    out = Path(out_dir)
    paths = {"summary": out / SUMMARY_FILE, "per_image": out / PER_IMAGE_FILE}
    atomic_write_bytes(paths["summary"], (json.dumps(result.summary, indent=2) + "\n").encode())
    buf = io.StringIO()
    fields = list(result.rows[0]) if result.rows else ["index", "name"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    atomic_write_bytes(paths["per_image"], buf.getvalue().encode())
    if result.sheet:
        png = io.BytesIO()
        Image.fromarray(contact_sheet_image(result.sheet)).save(png, format="PNG")
        paths["contact_sheet"] = out / CONTACT_SHEET_FILE
        atomic_write_bytes(paths["contact_sheet"], png.getvalue())
    return paths


def format_report(summary: dict[str, Any]) -> str:
    """A plain-text table of model vs grayscale baseline."""
    lines = [f"{'metric':<20}{'model':>12}{'gray baseline':>16}"]
    for key, value in summary["model"].items():
        lines.append(f"{key:<20}{value:>12.4f}{summary['baseline'].get(key, math.nan):>16.4f}")
    c = summary["counts"]
    lines.append(
        f"{c['evaluated']} photos evaluated; {c['excluded_gray']} near-gray excluded, "
        f"{c['unreadable']} unreadable, of {c['seen']} read"
    )
    return "\n".join(lines)
