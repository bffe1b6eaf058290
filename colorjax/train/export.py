"""From a training run to published weights: ``colorjax weights export``.

``export_checkpoint`` writes a run's inference parameters (read by ``train/run.py``: the
debiased EMA when the run kept one) as one colorjax weights file plus the manifest entry that
publishes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from colorjax.errors import ConfigError
from colorjax.fileio import child_path, ensure_output_dir
from colorjax.train.run import load_inference_params, read_run_info, training_info
from colorjax.weights.fileformat import save_weights, sha256_file
from colorjax.weights.manifest import NAME_RE, USER_MANIFEST, entry_family, load_manifest


def export_checkpoint(
    workdir: str | os.PathLike,
    name: str | None = None,
    out_dir: str | os.PathLike = ".",
    step: int | None = None,
    include_discriminator: bool = False,
    *,
    dtype: str = "float32",
    urls: list[str] | None = None,
    overwrite: bool = False,
    ema: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Turn a training run's checkpoint into a weights file plus its manifest entry.

    name defaults to the work dir's folder name; ema=False exports the live parameters
    instead of the (debiased) EMA. Existing outputs are replaced only with overwrite=True.
    """
    workdir = Path(workdir)
    if name is None:
        name = workdir.resolve().name
    if not NAME_RE.match(name):
        raise ConfigError(
            f"weights name {name!r} is invalid; pass --name with letters, digits, '.', '_', '-'"
        )
    ensure_output_dir(out_dir, "--out")
    out_path = child_path(out_dir, f"{name}.safetensors", "weights name")
    taken = [str(p) for p in (out_path, out_path.with_suffix(".json")) if p.exists()]
    manifest_path = Path(out_dir) / USER_MANIFEST
    if manifest_path.is_file():
        known = [e["name"] for e in load_manifest(manifest_path)["weights"]]
        taken += [f"entry {name!r} in {manifest_path}"] if name in known else []
    if taken and not overwrite:
        raise ConfigError(
            f"{taken[0]} already exists; pass --overwrite to replace it, or another --name or --out"
        )
    config, variables = load_inference_params(workdir, step, ema=ema)
    params = dict(variables["params"])
    if not include_discriminator:
        params.pop("discriminator", None)
    variables = {**variables, "params": params}
    training = training_info(workdir, config, step)
    training["ema"] = bool(ema and config.optim.ema_decay is not None)
    run = read_run_info(workdir)
    save_weights(
        out_path,
        config.model.name,
        dict(config.model.overrides),
        variables,
        {"working_size": int(config.data.image_size), "training": training},
        dtype=dtype,
    )
    entry = {
        "name": name,
        "family": entry_family({"model": config.model.name}),
        "model": config.model.name,
        "overrides": dict(config.model.overrides),
        "working_size": int(config.data.image_size),
        "urls": list(urls) if urls else [out_path.resolve().as_uri()],
        "sha256": sha256_file(out_path),
        "size": out_path.stat().st_size,
        "dtype": dtype,
        "licence": None,
        "training_data": training.get("data"),
        "training_command": " && ".join(run.get("commands", [])) or None,
        "hardware": run.get("hardware"),
        "steps": training.get("step"),
        "time": _describe_time(run, config),
        "eval": training["eval"],
        "description": "",
        "default": False,
    }
    return out_path, entry


def _describe_time(run: Mapping[str, Any], config: Any) -> str | None:
    """The manifest's 'time' text, e.g. '3.2 min wall for 300 steps of 16 photos at 64 px'."""
    if not isinstance(run.get("seconds"), (int, float)):
        return None
    return (
        f"{run['seconds'] / 60:.1f} min wall for {run.get('step', '?')} steps of "
        f"{config.train.batch_size} photos at {config.data.image_size} px"
    )
