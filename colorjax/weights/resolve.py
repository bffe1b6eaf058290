"""Where a weights file is: a manifest entry, name or path -> a verified local file.

Bundled files first, then the cache, then a download (``download``); PyTorch entries are
downloaded and converted (``pth_convert``). ``verify_weights`` re-hashes what is on disk.
Below the loader, so training can warm-start from weights without importing run loading.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from colorjax.errors import OfflineError, WeightsError
from colorjax.weights.download import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    bundled_file,
    cache_path,
    download_entry,
    download_lock,
    ensure_cache_dir,
    is_offline,
)
from colorjax.weights.fileformat import check_hash, sha256_file
from colorjax.weights.manifest import (
    WEIGHTS_DIR,
    ManifestLike,
    PretrainedCfg,
    as_cfg,
    default_entry,
    get_entry,
    list_pretrained,
)
from colorjax.weights.pth_convert import resolve_pth_entry, verify_row

logger = logging.getLogger(__name__)


def looks_like_path(name_or_path: str | os.PathLike) -> bool:
    """Return True when the argument is meant as a file path rather than a manifest name."""
    text = os.fspath(name_or_path)
    return (
        isinstance(name_or_path, os.PathLike)
        or text.endswith(".safetensors")
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or os.path.exists(text)
    )


def resolve_weights(
    name_or_path: str | os.PathLike | PretrainedCfg | None = None,
    manifest: ManifestLike = None,
    *,
    family: str | None = None,
    **fetch: Any,
) -> Path:
    """A verified local .safetensors path for a manifest name, a cfg, a file path, or None."""
    if isinstance(name_or_path, PretrainedCfg):
        return resolve_entry(name_or_path, **fetch)
    if name_or_path is not None and looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} does not exist (or is not a file); check the path"
            )
        if path.suffix.lower() in (".pth", ".pt", ".bin", ".ckpt"):
            raise WeightsError(
                f"{path} is a PyTorch file, not colorjax weights; convert it once with "
                f"`colorjax weights import {path} --name NAME` (an official file in the "
                f"manifest) or `colorjax weights import {path} --model MODEL --out FILE`, "
                "then pass that name or file"
            )
        return path
    if name_or_path is None:
        cfg = default_entry(family, manifest)
    else:
        cfg = get_entry(str(name_or_path), manifest)
    return resolve_entry(cfg, **fetch)


def resolve_entry(
    entry: PretrainedCfg | Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    bundled_dir: str | os.PathLike | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
) -> Path:
    """Find an entry's file: bundled, else cached, else downloaded; always sha256-verified."""
    cfg = as_cfg(entry)
    fetch = {"retries": retries, "backoff": backoff, "timeout": timeout, "progress": progress}
    if cfg.is_pth:
        # Official PyTorch weights: verified .pth -> converted colorjax file in the cache.
        return resolve_pth_entry(cfg, env=env, **fetch)
    for url in cfg.urls:
        if url.startswith("bundled:"):
            path = bundled_file(url, bundled_dir)
            if path.is_file():
                try:
                    check_hash(path, cfg.sha256, source=f"bundled weights {path}", delete=False)
                except WeightsError as err:
                    raise WeightsError(f"{err}. Reinstall colorjax to repair it.") from err
                return path
    target = cache_path(cfg, env)
    state = "missing"
    if target.is_file():
        if sha256_file(target) == cfg.sha256.lower():
            return target
        if is_offline(env):
            raise OfflineError(
                f"cached weights {cfg.name!r} at {target} are corrupt (sha256 mismatch) and "
                "COLORJAX_OFFLINE is set, so they cannot be downloaded again. Fix: copy a good "
                f"file there from a connected machine (`colorjax weights download {cfg.name}`), "
                "or unset COLORJAX_OFFLINE"
            )
        logger.warning("cached %s is corrupt; deleting it and downloading it again", target)
        try:
            target.unlink()
        except OSError as err:
            raise WeightsError(
                f"cached weights {target} are corrupt and cannot be deleted ({err.strerror}); "
                "delete the file by hand, or point COLORJAX_HOME at a writable folder"
            ) from err
        state = "corrupt (deleted)"
    if is_offline(env):
        raise OfflineError(
            f"weights {cfg.name!r} are not in the cache ({target} is {state}) and "
            f"COLORJAX_OFFLINE is set. Fix: download them on a connected machine (`colorjax "
            f"weights download {cfg.name}`) and copy the file to {target}, or unset "
            "COLORJAX_OFFLINE"
        )
    if not any(not u.startswith("bundled:") for u in cfg.urls):
        raise WeightsError(
            f"weights {cfg.name!r} are bundled but the bundled file is missing from "
            f"{Path(bundled_dir or WEIGHTS_DIR)} and no download URL is listed; reinstall colorjax"
        )
    ensure_cache_dir(target.parent, cfg.name)
    with download_lock(target):
        # Another process may have fetched the file while this one waited for the lock.
        if target.is_file() and sha256_file(target) == cfg.sha256.lower():
            return target
        return download_entry(cfg, target, env=env, **fetch)


def verify_weights(
    name: str | None = None,
    manifest: ManifestLike = None,
    *,
    env: Mapping[str, str] | None = None,
    bundled_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Re-hash bundled and cached files; one row per file: name, path, status, expected, actual."""
    entries = [get_entry(name, manifest)] if name else list_pretrained(manifest)
    rows: list[dict[str, Any]] = []
    for cfg in entries:
        if cfg.is_pth:
            rows.append(verify_row(cfg, env))
            continue
        paths = [bundled_file(url, bundled_dir) for url in cfg.urls if url.startswith("bundled:")]
        paths.append(cache_path(cfg, env))
        found = [p for p in paths if p.is_file()]
        for path in found:
            actual = sha256_file(path)
            status = "ok" if actual == cfg.sha256.lower() else "corrupted"
            rows.append(_row(cfg, path, status, actual))
        if not found:
            rows.append(_row(cfg, paths[-1], "missing", None))
    return rows


def _row(cfg: PretrainedCfg, path: Path, status: str, actual: str | None) -> dict[str, Any]:
    """One `colorjax weights verify` row."""
    return {
        "name": cfg.name,
        "path": str(path),
        "status": status,
        "expected": cfg.sha256,
        "actual": actual,
    }
