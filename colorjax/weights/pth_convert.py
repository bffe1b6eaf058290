"""Importing official PyTorch weights of ported models: convert once into a colorjax weights file.

Manifest entries with ``"format": "pytorch-state-dict"`` point at a ``.pth`` file (Zhang et
al.'s ECCV16 and SIGGRAPH17 colorizers). ``colorjax weights download NAME`` fetches it through
the sha256-verified download of :mod:`colorjax.weights.download`, reads it with
:mod:`colorjax.weights.pth` (no PyTorch,
no pickled code run), renames and re-lays the tensors into the Flax parameter tree, checks the
tree against the model, and writes a colorjax safetensors file into the cache; later loads read
that file directly. ``colorjax weights import FILE --name NAME`` does the same for a ``.pth``
already on disk (same sha256 check); ``--model MODEL --out FILE`` converts any state dict of a
supported architecture (e.g. your own fine-tuned PyTorch weights) without a manifest entry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from colorjax.errors import ConfigError, OfflineError, WeightsError
from colorjax.fileio import atomic_write_bytes
from colorjax.models.ddcolor import state_dict_to_params as ddcolor_params
from colorjax.weights import download
from colorjax.weights.fileformat import check_hash, save_weights, sha256_file
from colorjax.weights.fit import abstract_variables, check_variables
from colorjax.weights.manifest import ManifestLike, PretrainedCfg, as_cfg, get_entry
from colorjax.weights.pth import load_state_dict

logger = logging.getLogger(__name__)

BN_EPS = 1e-5  # PyTorch BatchNorm2d default, used by the reference networks
DEFAULT_WORKING_SIZE = 256  # the reference demos resize to 256 x 256

# PyTorch ConvTranspose2d layers, whose weights are (in, out, kh, kw) and spatially flipped.
_TRANSPOSED = {
    "zhang-eccv16": frozenset({"model8_0"}),
    "zhang-siggraph17": frozenset({"model8up_0", "model9up_0", "model10up_0"}),
}
# State-dict entries the Flax port has no use for: BatchNorm counters and SIGGRAPH17's unused
# 529-class head.
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_IGNORED_PREFIXES = {"zhang-siggraph17": ("model_class.",)}


# Ported families with a converter of their own (beside their module): family -> function of
# (state dict, model) giving the Flax params; it names missing, extra and misshapen entries.
_FAMILY_CONVERTERS = {"ddcolor": lambda state, model: ddcolor_params(state, model.encoder)}


def supported_models() -> list[str]:
    """Registry names whose PyTorch state dicts this module converts."""
    from colorjax.models import get_spec, list_models

    ported = [n for n in list_models() if get_spec(n).family in _FAMILY_CONVERTERS]
    return sorted([*_TRANSPOSED, *ported])


def _torch_prefix(module: str) -> str:
    """Flax module name -> PyTorch prefix: 'model3_4' -> 'model3.4', 'model_out' unchanged."""
    head, _, tail = module.rpartition("_")
    return f"{head}.{tail}" if head and tail.isdigit() else module


def _take(state: Mapping[str, np.ndarray], key: str, used: set[str]) -> np.ndarray:
    """Return state[key] as float64 (exact for float32/16 sources), recording its use."""
    if key not in state:
        raise WeightsError(
            f"the state dict has no {key!r}; it is not from the expected architecture "
            "(use the official file for this model)"
        )
    used.add(key)
    return np.asarray(state[key], np.float64)


def state_dict_to_variables(
    state: Mapping[str, np.ndarray], model_name: str, working_size: int = DEFAULT_WORKING_SIZE
) -> dict[str, Any]:
    """Convert a PyTorch state dict of a supported model into colorjax variables (checked)."""
    from colorjax.models import build_model, get_spec

    if model_name not in supported_models():
        raise ConfigError(
            f"no PyTorch converter for model {model_name!r}; supported: {supported_models()}"
        )
    model = build_model(model_name)
    family = get_spec(model_name).family
    if family in _FAMILY_CONVERTERS:
        variables = {"params": _FAMILY_CONVERTERS[family](state, model)}
        check_variables(model, variables, working_size, model_name=f"model {model_name!r}")
        return variables
    abstract = abstract_variables(model, working_size)["params"]
    used: set[str] = set()
    params: dict[str, dict[str, np.ndarray]] = {}
    for module, leaves in abstract.items():
        prefix = _torch_prefix(module)
        out: dict[str, np.ndarray] = {}
        if set(leaves) == {"scale", "shift"}:
            # Inference BatchNorm folded to y = x * scale + shift.
            weight = _take(state, f"{prefix}.weight", used)
            bias = _take(state, f"{prefix}.bias", used)
            mean = _take(state, f"{prefix}.running_mean", used)
            var = _take(state, f"{prefix}.running_var", used)
            scale = weight / np.sqrt(var + BN_EPS)
            out = {"scale": scale, "shift": bias - mean * scale}
        else:
            weight = _take(state, f"{prefix}.weight", used)
            if weight.ndim != 4:
                raise WeightsError(f"{prefix}.weight has shape {weight.shape}; expected a conv")
            if module in _TRANSPOSED[model_name]:
                # (in, out, kh, kw) gradient-of-conv kernel -> plain conv over the dilated input.
                out["kernel"] = weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
            else:
                out["kernel"] = weight.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> HWIO
            if "bias" in leaves:
                out["bias"] = _take(state, f"{prefix}.bias", used)
        params[module] = {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}
    ignored = _IGNORED_PREFIXES.get(model_name, ())
    extra = sorted(
        k
        for k in state
        if k not in used and not k.endswith(_IGNORED_SUFFIXES) and not k.startswith(ignored)
    )
    if extra:
        raise WeightsError(
            f"the state dict has {len(extra)} entries that {model_name} does not have "
            f"({', '.join(extra[:3])}); it is from another architecture"
        )
    variables = {"params": params}
    check_variables(model, variables, working_size, model_name=f"model {model_name!r}")
    return variables


def load_pth_params(path: str | os.PathLike, model_name: str) -> dict[str, Any]:
    """Params of a ported model from its PyTorch .pth state dict (restricted reader, checked)."""
    state = load_state_dict(Path(path).expanduser())
    return state_dict_to_variables(state, model_name)["params"]


def convert_file(
    pth_path: str | os.PathLike,
    model_name: str,
    out_path: str | os.PathLike,
    *,
    source: Mapping[str, Any] | None = None,
    working_size: int = DEFAULT_WORKING_SIZE,
    resize: str | None = None,
) -> Path:
    """Convert a .pth state dict into a colorjax weights file (atomic write); return its path.

    `resize`: how inference brings photos to the working size ('fit' or 'stretch'), recorded
    in the file for `colorize` (official DDColor inference stretches to a square).
    """
    pth_path = Path(pth_path)
    variables = state_dict_to_variables(load_state_dict(pth_path), model_name, working_size)
    info = dict(source or {})
    info.setdefault("file", pth_path.name)
    info.setdefault("sha256", sha256_file(pth_path))
    meta = {"working_size": working_size, "training": {}, "converted_from": info}
    if resize is not None:
        meta["resize"] = resize
    return save_weights(out_path, model_name, {}, variables, meta)


def _sidecar(target: Path) -> Path:
    """File holding the sha256 of a converted cache file (checked on every load)."""
    return target.with_name(target.name + ".sha256")


def _cached(target: Path) -> bool:
    """True when the converted file exists and matches the hash recorded at conversion."""
    side = _sidecar(target)
    if not (target.is_file() and side.is_file()):
        return False
    if sha256_file(target) == side.read_text().strip():
        return True
    logger.warning("converted weights %s are corrupt; converting them again", target)
    target.unlink()
    return False


def _convert_into_cache(
    pth: Path, cfg: PretrainedCfg, target: Path, env: Mapping[str, str] | None = None
) -> Path:
    """Convert a verified .pth of a manifest entry into the cache, with its hash sidecar.

    An unpinned entry's first file has passed the size check only: the conversion checks every
    entry of its state dict against the model, and only then is its sha256 recorded, which
    every later download and import must match.
    """
    digest = sha256_file(pth)
    source = {
        "name": cfg.name,
        "urls": list(cfg.urls),
        "sha256": digest,
        "sha256_pinned": cfg.pinned,  # False: recorded at the first download (no public hash)
        "licence": cfg.get("licence"),
        "paper": cfg.get("paper"),
    }
    working_size = int(cfg.working_size or DEFAULT_WORKING_SIZE)
    convert_file(
        pth, cfg.model, target, source=source, working_size=working_size, resize=cfg.get("resize")
    )
    atomic_write_bytes(_sidecar(target), (sha256_file(target) + "\n").encode())
    record = download.first_download_record(cfg, env)
    if not cfg.pinned and not record.is_file():
        atomic_write_bytes(record, (digest + "\n").encode())
        logger.warning(
            "weights %r have no published sha256: recorded %s from this first download (%s); "
            'later downloads must match it. Pin it with "sha256": "%s" in a manifest once '
            "you trust the file",
            cfg.name,
            digest,
            record,
            digest,
        )
    return target


def resolve_pth_entry(
    entry: PretrainedCfg | Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    **download_kwargs: Any,
) -> Path:
    """Return the converted file of a .pth entry: cached, else downloaded, verified, converted."""
    cfg = as_cfg(entry)
    target = download.cache_path(cfg, env)
    if _cached(target):
        return target
    name = cfg.name
    if download.is_offline(env):
        raise OfflineError(
            f"weights {name!r} are not in the cache ({target} is missing) and COLORJAX_OFFLINE is "
            f"set. Fix: on a connected machine run `colorjax weights download {name}` and copy "
            f"{target} and its .sha256 file here, or, with the original .pth on disk, run "
            f"`colorjax weights import FILE --name {name}`, or unset COLORJAX_OFFLINE"
        )
    if not any(not u.startswith("bundled:") for u in cfg.urls):
        raise WeightsError(f"weights {name!r} list no download URL; fix the manifest")
    download.ensure_cache_dir(target.parent, name)
    with download.download_lock(target):
        if _cached(target):
            return target
        pth = target.with_name(target.name.removesuffix(".safetensors") + ".pth")
        # The full sha256 is verified before this function reads a single pickle byte; an
        # unpinned entry's first download is size-checked, then read by the restricted
        # unpickler (no code runs) and checked entry by entry before its hash is recorded.
        download.download_entry(cfg, pth, env=env, **download_kwargs)
        try:
            if download.expected_sha256(cfg, env) is None:
                download.check_hub_size(pth, cfg)
            _convert_into_cache(pth, cfg, target, env)
        finally:
            pth.unlink(missing_ok=True)  # the converted file is all later loads need
    return target


def import_pth(
    path: str | os.PathLike,
    name: str,
    manifest: ManifestLike = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Verify a local .pth against manifest entry `name` and convert it into the cache."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path} does not exist (or is not a file); check the path")
    cfg = get_entry(name, manifest)
    if not cfg.is_pth:
        raise ConfigError(
            f"weights {name!r} are not PyTorch weights in the manifest; `import` takes the names "
            "of .pth entries (see `colorjax weights list`), or --model MODEL --out FILE"
        )
    expected = download.expected_sha256(cfg, env)
    if expected is not None:
        check_hash(path, expected, source=str(path), delete=False)
    else:
        download.check_hub_size(path, cfg, delete=False)
    target = download.cache_path(cfg, env)
    with download.download_lock(target):
        return _convert_into_cache(path, cfg, target, env)


def verify_row(
    entry: PretrainedCfg | Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`colorjax weights verify` row for a .pth entry: its converted file against the sidecar."""
    cfg = as_cfg(entry)
    target = download.cache_path(cfg, env)
    side = _sidecar(target)
    if not target.is_file():
        status, expected, actual = "missing", cfg.sha256, None
    else:
        expected = side.read_text().strip() if side.is_file() else "(no .sha256 record)"
        actual = sha256_file(target)
        status = "ok" if actual == expected else "corrupted"
    return {
        "name": cfg.name,
        "path": str(target),
        "status": status,
        "expected": expected,
        "actual": actual,
    }
