"""From a training run to weights: inference parameters out of its Orbax checkpoint, and export.

``load_inference_params`` restores a run's parameters for inference (the debiased EMA when the
run kept one); ``export_checkpoint`` writes them as one colorjax weights file plus the manifest
entry that publishes it (``colorjax weights export``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from colorjax.errors import ConfigError
from colorjax.fileio import child_path, ensure_output_dir
from colorjax.weights.fileformat import check_finite, flatten_variables, save_weights, sha256_file
from colorjax.weights.manifest import NAME_RE, USER_MANIFEST, entry_family, load_manifest


def load_inference_params(
    workdir: str | os.PathLike, step: int | None = None, *, ema: bool = True
) -> tuple[Any, dict[str, Any]]:
    """(config, {'params': ...}) from a training run: the debiased EMA when the run kept one.

    ema=False gives the live (last trained) parameters instead.
    """
    import jax

    from colorjax.checkpoint import CheckpointStore, checkpoint_dir, checkpoint_steps
    from colorjax.train.state import abstract_state, debiased_ema, inference_params, make_task

    steps = checkpoint_steps(workdir)
    if not steps:
        raise ConfigError(
            f"no checkpoint in {checkpoint_dir(workdir)}; pass the --workdir of a training run"
        )
    if step is not None and step not in steps:
        raise ConfigError(
            f"no checkpoint at step {step} in {checkpoint_dir(workdir)}; the run kept steps "
            f"{', '.join(map(str, steps))} (pass one of them with --step, or leave it out for "
            "the latest)"
        )
    store = CheckpointStore(workdir, read_only=True, async_save=False)
    try:
        config = store.read_config(step)
        task = make_task(config)
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state, _, _ = store.restore(step, abstract_state(task, sharding))
    finally:
        store.close()
    if ema:
        state = state.replace(ema_params=debiased_ema(task, state))
    else:
        state = state.replace(ema_params=None)  # inference_params then returns the live ones
    params = inference_params(task, state)
    # A checkpoint is refused when non-finite at save time, but the disk may still flip a bit.
    check_finite(flatten_variables({"params": params}), f"the checkpoint in {workdir}")
    return config, {"params": params}


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
    run = _run_info(workdir)
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


def _run_info(workdir: Path) -> dict[str, Any]:
    """What `colorjax train` recorded in WORKDIR/run.json (commands, hardware, seconds)."""
    try:
        info = json.loads((workdir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe_time(run: Mapping[str, Any], config: Any) -> str | None:
    """The manifest's 'time' text, e.g. '3.2 min wall for 300 steps of 16 photos at 64 px'."""
    if not isinstance(run.get("seconds"), (int, float)):
        return None
    return (
        f"{run['seconds'] / 60:.1f} min wall for {run.get('step', '?')} steps of "
        f"{config.train.batch_size} photos at {config.data.image_size} px"
    )


def training_info(workdir: Path, config: Any, step: int | None) -> dict[str, Any]:
    """Collect what the header records about training: config, data source, step, last eval."""
    from colorjax.checkpoint import checkpoint_steps

    info: dict[str, Any] = {"workdir": str(Path(workdir).resolve())}
    with contextlib.suppress(AttributeError):
        info["data"] = config.data.source
    with contextlib.suppress(AttributeError, TypeError):
        info["config"] = config.to_dict()
    steps = checkpoint_steps(workdir)
    info["step"] = step if step is not None else (steps[-1] if steps else None)
    info["eval"] = _last_eval(Path(workdir), info["step"])
    return info


def _last_eval(workdir: Path, step: int | None) -> dict[str, float]:
    """Return the run's last logged eval metrics at or before `step` (empty if none)."""
    path = workdir / "metrics.jsonl"
    found: dict[str, float] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash says nothing reliable
        if not isinstance(record, dict) or record.get("kind") != "eval":
            continue
        if step is not None and isinstance(record.get("step"), int) and record["step"] > step:
            continue
        found = {
            k: float(v)
            for k, v in record.items()
            if k not in ("kind", "step", "time") and isinstance(v, (int, float))
        }
    return found
