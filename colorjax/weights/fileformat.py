"""The colorjax weights file: one safetensors file whose header carries the model's metadata.

Tensors are stored under '/'-joined paths of the Flax variables tree ('params/enc/kernel');
the header holds the format tag and version, the registry model name, its constructor
overrides, the working size, the training record and the storage dtype, plus any extra keys
as JSON. Files are written atomically and every load checks that no tensor is NaN or Inf.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from colorjax.errors import ConfigError, WeightsError
from colorjax.fileio import atomic_write_bytes

FORMAT_NAME = "colorjax-weights"
FORMAT_VERSION = 1
STORAGE_DTYPES = ("float32", "float16")
# Header keys written by save_weights; everything else in the header is a JSON-encoded extra.
_RESERVED_META = (
    "format",
    "format_version",
    "colorjax_version",
    "model",
    "overrides",
    "working_size",
    "training",
    "dtype",
)


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file's full contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hash(path: Path, expected: str, *, source: str, delete: bool) -> None:
    """Raise WeightsError when a file's sha256 is not the expected one (optionally deleting it)."""
    actual = sha256_file(path)
    if actual == expected.lower():
        return
    if delete:
        path.unlink(missing_ok=True)
    raise WeightsError(
        f"sha256 mismatch for {source}: expected {expected}, got {actual}. The file is corrupt or "
        "not the published one"
        + (" and was deleted" if delete else "")
        + "; download it again (`colorjax weights download NAME`), and if that fails, the "
        "manifest's sha256 or the URL is wrong"
    )


def flatten_tree(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten nested mappings into {'a/b/c': leaf} without touching the leaves."""
    from flax import traverse_util

    out: dict[str, Any] = {}
    for path, value in traverse_util.flatten_dict(_plain(tree)).items():
        bad = [str(part) for part in path if "/" in str(part)]
        if bad:
            raise ValueError(f"parameter name {bad[0]!r} contains '/'; cannot flatten")
        out["/".join(str(part) for part in path)] = value
    return out


def flatten_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flatten a nested variables dict into {'params/a/b/kernel': numpy array}."""
    return {key: np.asarray(value) for key, value in flatten_tree(variables).items()}


def _plain(tree: Any) -> Any:
    """Nested Mappings (FrozenDict included) as plain dicts, which flatten_dict walks."""
    if isinstance(tree, Mapping):
        return {key: _plain(value) for key, value in tree.items()}
    return tree


def unflatten_variables(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild the nested variables dict from '/'-joined keys."""
    from flax import traverse_util

    return traverse_util.unflatten_dict(dict(flat), sep="/")


def check_finite(flat: Mapping[str, Any], where: str) -> None:
    """Raise WeightsError if any floating tensor holds NaN or Inf (one flipped bit suffices)."""
    bad = []
    for key, value in flat.items():
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
            count = int(value.size - np.count_nonzero(np.isfinite(value)))
            if count:
                bad.append(f"{key} ({count} of {value.size})")
    if bad:
        raise WeightsError(
            f"{where} holds non-finite values (NaN or Inf) in {len(bad)} parameter(s): "
            f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}. The weights are damaged "
            "(a corrupt file, or a diverged run); download, export or convert them again"
        )


def save_weights(
    path: str | os.PathLike,
    model_name: str,
    overrides: Mapping[str, Any] | None,
    variables: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    *,
    dtype: str = "float32",
) -> Path:
    """Write variables and metadata (needs meta['working_size']) as one safetensors file."""
    import safetensors.numpy

    from colorjax import __version__

    meta = dict(meta or {})
    if dtype not in STORAGE_DTYPES:
        raise ConfigError(f"weights dtype {dtype!r} is not supported; use one of {STORAGE_DTYPES}")
    if meta.get("working_size") is None:
        raise ConfigError("save_weights needs meta['working_size'] (the training image size)")
    flat = flatten_variables(variables)
    check_finite(flat, "the weights to save")
    tensors: dict[str, np.ndarray] = {}
    for key, value in flat.items():
        if np.issubdtype(value.dtype, np.floating):
            stored = value.astype(dtype)
            if not np.all(np.isfinite(stored) | ~np.isfinite(value)):
                raise WeightsError(
                    f"parameter {key} overflows {dtype}; save with dtype='float32' instead"
                )
            value = stored
        tensors[key] = np.ascontiguousarray(value)
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "colorjax_version": __version__,
        "model": str(model_name),
        "overrides": json.dumps(dict(overrides or {}), sort_keys=True),
        "working_size": str(int(meta.pop("working_size"))),
        "training": json.dumps(meta.pop("training", {}) or {}, sort_keys=True),
        "dtype": dtype,
    }
    for key, value in meta.items():
        if key in _RESERVED_META:
            continue  # the file's own values win; a stale copy in meta must not overwrite them
        header[str(key)] = json.dumps(value, sort_keys=True)
    path = Path(path)
    atomic_write_bytes(path, safetensors.numpy.save(tensors, metadata=header))
    return path


def _decode_header(header: Mapping[str, str] | None, path: Path) -> dict[str, Any]:
    """Turn a safetensors string header into typed metadata, or raise WeightsError."""
    if not header or header.get("format") != FORMAT_NAME:
        raise WeightsError(
            f"{path} is a safetensors file but not a colorjax weights file (no colorjax metadata "
            "in its header); create weights with `colorjax weights export` or save_weights"
        )
    try:
        version = int(header["format_version"])
        meta: dict[str, Any] = {
            "format_version": version,
            "colorjax_version": header.get("colorjax_version", "unknown"),
            "model": header["model"],
            "overrides": json.loads(header.get("overrides") or "{}"),
            "working_size": int(header["working_size"]),
            "training": json.loads(header.get("training") or "{}"),
            "dtype": header.get("dtype", "float32"),
        }
    except (KeyError, ValueError) as err:
        raise WeightsError(f"{path} has a damaged colorjax header ({err!r}); re-export it") from err
    if version > FORMAT_VERSION:
        raise WeightsError(
            f"{path} uses weights format {version}, newer than this colorjax understands "
            f"({FORMAT_VERSION}); upgrade colorjax"
        )
    for key, value in header.items():
        if key not in _RESERVED_META:
            try:
                meta[key] = json.loads(value)
            except ValueError:
                meta[key] = value
    return meta


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read only the header metadata of a weights file."""
    import safetensors

    path = Path(path)
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            header = f.metadata()
    except FileNotFoundError as err:
        raise WeightsError(f"weights file {path} does not exist; check the path") from err
    except Exception as err:  # safetensors raises its own SafetensorError on bad headers
        raise WeightsError(
            f"{path} is not a valid safetensors weights file ({err}); download or export it again"
        ) from err
    return _decode_header(header, path)


def load_weights(
    path: str | os.PathLike, *, expected_sha256: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a weights file -> (variables with float32 params, metadata); hash checked if given."""
    import safetensors

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; check the path")
    if expected_sha256 is not None:
        check_hash(path, expected_sha256, source=str(path), delete=False)
    meta = read_metadata(path)
    flat: dict[str, np.ndarray] = {}
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                # Copy so no array keeps the memory-mapped file open.
                value = np.array(f.get_tensor(key))
                if np.issubdtype(value.dtype, np.floating):
                    value = value.astype(np.float32)  # float16 storage is restored to float32
                flat[key] = value
    except Exception as err:
        raise WeightsError(f"{path} has damaged tensor data ({err}); download it again") from err
    # An integer kernel would be cast silently in apply and change every output.
    not_float = sorted(k for k, v in flat.items() if not np.issubdtype(v.dtype, np.floating))
    if not_float:
        raise WeightsError(
            f"{path}: tensor {not_float[0]} has dtype {flat[not_float[0]].dtype} (and "
            f"{len(not_float) - 1} more non-float tensors); colorjax weights are float16/32/64. "
            "The file was not written by colorjax (or was edited); export the weights again"
        )
    if not flat:
        raise WeightsError(f"{path} holds no tensors; export the weights again")
    check_finite(flat, str(path))
    return unflatten_variables(flat), meta
