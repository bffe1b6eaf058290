"""Pretrained weights: manifest, download, verification, cache, loading and export."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shlex
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from colorjax.errors import (
    ConfigError,
    DownloadError,
    OfflineError,
    OutputPathError,
    WeightsError,
)
from colorjax.fileio import atomic_write_bytes, ensure_output_dir

logger = logging.getLogger(__name__)

FORMAT_NAME = "colorjax-weights"
FORMAT_VERSION = 1
MANIFEST_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MANIFEST = WEIGHTS_DIR / "manifest.json"
USER_MANIFEST = "manifest.json"  # what `weights export` keeps in its output folder
STORAGE_DTYPES = ("float32", "float16")
DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 1.0
DEFAULT_TIMEOUT = 30.0
_CHUNK = 1 << 16
_MAX_RESUMES = 100  # interrupted transfers that still made progress, on top of the retries
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
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
# HTTP statuses that are worth retrying: the server may recover; any other 4xx will not.
_RETRY_STATUS = {408, 425, 429}


# ---------------------------------------------------------------------------- cache and manifest


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    """Return the environment to read: the one passed in, else os.environ at call time."""
    return os.environ if env is None else env


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the weights cache: $COLORJAX_HOME, else $XDG_CACHE_HOME/colorjax, else ~/.cache."""
    environ = _env(env)
    if environ.get("COLORJAX_HOME"):
        return Path(environ["COLORJAX_HOME"]).expanduser()
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]).expanduser() / "colorjax"
    return Path.home() / ".cache" / "colorjax"


def is_offline(env: Mapping[str, str] | None = None) -> bool:
    """Return True when COLORJAX_OFFLINE asks for cache-only operation."""
    value = _env(env).get("COLORJAX_OFFLINE", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def load_manifest(manifest: str | os.PathLike | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load and validate a manifest from a path or dict (default: the packaged manifest)."""
    if manifest is None:
        manifest = DEFAULT_MANIFEST
    if isinstance(manifest, Mapping):
        data = dict(manifest)
        where = "<manifest dict>"
    else:
        where = str(manifest)
        try:
            data = json.loads(Path(manifest).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise WeightsError(
                f"weights manifest {where} does not exist; pass the path of a manifest.json"
            ) from err
        except (OSError, json.JSONDecodeError) as err:
            raise WeightsError(
                f"weights manifest {where} is unreadable ({err}); fix it or reinstall colorjax"
            ) from err
    if not isinstance(data, Mapping):
        raise WeightsError(
            f"weights manifest {where} is a JSON {type(data).__name__}, not an object with a "
            "'weights' list; fix the manifest (colorjax weights export writes valid ones)"
        )
    version = data.get("format_version", MANIFEST_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise WeightsError(
            f"weights manifest {where}: format_version must be an integer, got {version!r}; "
            f"set it to {MANIFEST_VERSION}"
        )
    if version > MANIFEST_VERSION:
        raise WeightsError(
            f"weights manifest {where} has format {version}, newer than this "
            f"colorjax understands ({MANIFEST_VERSION}); upgrade colorjax"
        )
    entries = data.get("weights")
    if not isinstance(entries, list):
        raise WeightsError(f"weights manifest {where} has no 'weights' list; fix the manifest")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        _check_entry(entry, f"weights manifest {where}: entry {index}")
        if entry["name"] in seen:
            raise WeightsError(f"weights manifest {where}: name {entry['name']!r} appears twice")
        seen.add(entry["name"])
    return data


def _check_entry(entry: Any, where: str) -> None:
    """Raise WeightsError unless an entry has the fields and types the hub relies on."""
    if not isinstance(entry, Mapping):
        raise WeightsError(f"{where} is a {type(entry).__name__}, not an object; fix the manifest")
    where = f"{where} ({entry.get('name', '?')!r})"
    missing = [k for k in ("name", "model", "sha256", "urls") if k not in entry]
    if missing:
        raise WeightsError(
            f"{where} lacks {missing}; add them (colorjax weights export writes complete entries)"
        )
    for key in ("name", "model"):
        if not isinstance(entry[key], str) or not entry[key]:
            raise WeightsError(f"{where}: {key} must be a non-empty string, got {entry[key]!r}")
    if not isinstance(entry["sha256"], str) or not re.fullmatch(
        r"[0-9a-fA-F]{64}", entry["sha256"]
    ):
        raise WeightsError(
            f"{where}: sha256 must be 64 hex digits as a string, got {entry['sha256']!r}; "
            "write the file's full sha256 (sha256sum FILE)"
        )
    urls = entry["urls"]
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise WeightsError(
            f'{where}: urls must be a list of strings, e.g. ["https://host/file.safetensors"], '
            f"got {urls!r}"
        )


def _entry_family(entry: Mapping[str, Any]) -> str:
    """Return an entry's model family, from the entry or else the model registry."""
    if entry.get("family"):
        return str(entry["family"])
    from colorjax.models import get_spec

    return get_spec(entry["model"]).family


def get_entry(name: str, manifest: str | os.PathLike | Mapping | None = None) -> dict[str, Any]:
    """Return the manifest entry called `name`; unknown -> WeightsError listing the names."""
    entries = load_manifest(manifest)["weights"]
    for entry in entries:
        if entry["name"] == name:
            return dict(entry)
    names = ", ".join(e["name"] for e in entries) or "(none)"
    raise WeightsError(
        f"unknown weights {name!r}: not a manifest name and not an existing file. "
        f"Known names: {names}. Pass one of them or the path of a .safetensors file."
    )


def default_entry(
    family: str | None = None, manifest: str | os.PathLike | Mapping | None = None
) -> dict[str, Any]:
    """Return the default entry of a family (no family: the ColorNet default, else any default)."""
    entries = load_manifest(manifest)["weights"]
    if family is not None:
        entries = [e for e in entries if _entry_family(e) == family]
    defaults = [e for e in entries if e.get("default")]
    if family is None:
        # ColorNet is the lighter, steadier family, so it is the overall default.
        defaults.sort(key=lambda e: _entry_family(e) != "colornet")
    candidates = defaults or entries
    if not candidates:
        which = f"for family {family!r} " if family else ""
        raise WeightsError(
            f"no pretrained weights {which}in the manifest; pass the path of a .safetensors "
            "file, or train a model and publish it with `colorjax weights export`"
        )
    return dict(candidates[0])


def cache_path(entry: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Path:
    """Return where the cache keeps an entry's file (the hash prefix keeps versions apart)."""
    return cache_dir(env) / "weights" / f"{entry['name']}-{entry['sha256'][:12]}.safetensors"


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file's full contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- file format


def _flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten nested mappings into {'a/b/c': leaf} without touching the leaves."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if "/" in str(key):
                    raise ValueError(f"parameter name {key!r} contains '/'; cannot flatten")
                visit(f"{prefix}/{key}" if prefix else str(key), value)
        else:
            flat[prefix] = node

    visit("", tree)
    return flat


def flatten_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flatten a nested variables dict into {'params/a/b/kernel': numpy array}."""
    return {key: np.asarray(value) for key, value in _flatten(variables).items()}


def unflatten_variables(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Rebuild the nested variables dict from '/'-joined keys."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


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
        _check_hash(path, expected_sha256, source=str(path), delete=False)
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
    if not flat:
        raise WeightsError(f"{path} holds no tensors; export the weights again")
    check_finite(flat, str(path))
    return unflatten_variables(flat), meta


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


# ---------------------------------------------------------------------------- download


def _check_hash(path: Path, expected: str, *, source: str, delete: bool) -> None:
    """Raise WeightsError when a file's sha256 is not the expected one (optionally deleting it)."""
    actual = sha256_file(path)
    if actual == expected.lower():
        return
    if delete:
        with contextlib.suppress(OSError):
            path.unlink()
    raise WeightsError(
        f"sha256 mismatch for {source}: expected {expected}, got {actual}. The file is corrupt or "
        "not the published one"
        + (" and was deleted" if delete else "")
        + "; download it again (`colorjax weights download NAME`), and if that fails, the "
        "manifest's sha256 or the URL is wrong"
    )


def _is_retryable_http(code: int) -> bool:
    """Return True for HTTP errors a later attempt may not get (server errors, throttling)."""
    return code >= 500 or code in _RETRY_STATUS


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """Parse 'bytes START-END/TOTAL' -> (START, TOTAL or None)."""
    match = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    if not match:
        return None
    total = None if match.group(2) == "*" else int(match.group(2))
    return int(match.group(1)), total


class _InterruptedError(Exception):
    """The transfer stopped early; the partial file is kept for a resume."""


def _transfer(url: str, part: Path, *, timeout: float, progress: bool | None, desc: str) -> None:
    """Fetch url into part, resuming from its current size; raises on any interruption."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "colorjax-hub"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http/file only
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # The partial file is no use to this server (e.g. it changed): start over.
            part.unlink()
            raise _InterruptedError(f"range not satisfiable at {offset}; restarting") from err
        raise
    with response:
        status = getattr(response, "status", None) or 200
        mode = "ab"
        if offset and status == 206:
            content_range = _parse_content_range(response.headers.get("Content-Range"))
            if content_range is None or content_range[0] != offset:
                part.unlink()  # resuming cannot work against this answer: start over next time
                raise _InterruptedError("server answered the range request with another range")
        elif offset:
            # The server ignored Range and sends the whole file: restart cleanly.
            logger.info("%s ignored the range request; downloading from the start", url)
            offset, mode = 0, "wb"
        length_header = response.headers.get("Content-Length")
        expected_length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + expected_length if expected_length is not None else None
        received = 0
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=None if progress is None else not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
    # http.client returns a short body without complaint when the peer hangs up early.
    if expected_length is not None and received < expected_length:
        raise _InterruptedError(f"connection closed after {received} of {expected_length} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
) -> Path:
    """Download an http(s) or file URL to dest via dest.part, resuming and retrying."""
    dest = Path(dest)
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise DownloadError(f"cannot download {url}: only http, https and file URLs are supported")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: BaseException | None = None
    failed = 0  # attempts that made no progress; an interrupted transfer that grew is free
    for _ in range(retries + 1 + _MAX_RESUMES):
        if last_error is not None:
            delay = backoff * 2 ** max(failed - 1, 0)
            logger.warning("retrying %s in %.1fs (%s)", url, delay, last_error)
            time.sleep(delay)
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, timeout=timeout, progress=progress, desc=dest.name)
        except urllib.error.HTTPError as err:
            err.close()  # the error doubles as an open response; free its socket now
            if not _is_retryable_http(err.code):
                raise DownloadError(
                    f"cannot download {url}: HTTP {err.code} {err.reason}. The URL is wrong or the "
                    "file was removed; check the manifest URL or download the file by hand into "
                    f"{dest}"
                ) from err
            last_error = err
        except urllib.error.URLError as err:
            if isinstance(err.reason, FileNotFoundError):
                raise DownloadError(
                    f"cannot download {url}: no such file; check the manifest URL"
                ) from err
            last_error = err
        except (_InterruptedError, http.client.HTTPException, OSError) as err:
            # Network hiccups (resets, timeouts, short bodies) are retried; the .part is resumed.
            last_error = err
        else:
            os.replace(part, dest)
            return dest
        grew = part.exists() and part.stat().st_size > before
        failed += 0 if grew else 1
        if failed > retries:
            break
    kept = f" (the partial file {part} is kept and resumed)" if part.exists() else ""
    raise DownloadError(
        f"cannot download {url} after {failed} failed attempts (last error: {last_error}); check "
        f"your connection and retry{kept}, or download the file by hand into {dest}"
    )


# ---------------------------------------------------------------------------- resolve and verify


def _looks_like_path(name_or_path: str | os.PathLike) -> bool:
    """Return True when the argument is meant as a file path rather than a manifest name."""
    text = os.fspath(name_or_path)
    return (
        isinstance(name_or_path, os.PathLike)
        or text.endswith(".safetensors")
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or os.path.exists(text)
    )


def _bundled_file(url: str, bundled_dir: str | os.PathLike | None) -> Path:
    """Return the path of a 'bundled:FILENAME' URL inside the package weights folder."""
    filename = url.split(":", 1)[1]
    if not filename or "/" in filename or "\\" in filename or filename.startswith("."):
        raise WeightsError(f"bad bundled URL {url!r} in the manifest; use bundled:FILENAME")
    return Path(bundled_dir or WEIGHTS_DIR) / filename


def resolve_weights(
    name_or_path: str | os.PathLike | None = None,
    manifest: str | os.PathLike | Mapping | None = None,
    *,
    family: str | None = None,
    env: Mapping[str, str] | None = None,
    bundled_dir: str | os.PathLike | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
) -> Path:
    """Return a verified local path for a manifest name or a .safetensors path (None: default)."""
    if name_or_path is not None and _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights file {path} does not exist (or is not a file); check the path"
            )
        return path
    if name_or_path is None:
        entry = default_entry(family, manifest)
    else:
        entry = get_entry(str(name_or_path), manifest)
    return _resolve_entry(
        entry,
        env=env,
        bundled_dir=bundled_dir,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
        progress=progress,
    )


def _resolve_entry(
    entry: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None,
    bundled_dir: str | os.PathLike | None,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool | None,
) -> Path:
    """Find an entry's file: bundled, else cached, else downloaded; always sha256-verified."""
    if entry.get("format") == "pytorch-state-dict":
        # Official PyTorch weights: verified .pth -> converted colorjax file in the cache.
        from colorjax.pth_weights import resolve_pth_entry

        return resolve_pth_entry(
            entry, env=env, retries=retries, backoff=backoff, timeout=timeout, progress=progress
        )
    name, expected = entry["name"], entry["sha256"]
    urls = list(entry["urls"])
    for url in urls:
        if url.startswith("bundled:"):
            path = _bundled_file(url, bundled_dir)
            if path.is_file():
                try:
                    _check_hash(path, expected, source=f"bundled weights {path}", delete=False)
                except WeightsError as err:
                    raise WeightsError(f"{err}. Reinstall colorjax to repair it.") from err
                return path
    remote = [u for u in urls if not u.startswith("bundled:")]
    target = cache_path(entry, env)
    state = "missing"
    if target.is_file():
        if sha256_file(target) == expected.lower():
            return target
        if is_offline(env):
            raise OfflineError(
                f"cached weights {name!r} at {target} are corrupt (sha256 mismatch) and "
                "COLORJAX_OFFLINE is set, so they cannot be downloaded again. Fix: copy a good "
                f"file there from a connected machine (`colorjax weights download {name}`), or "
                "unset COLORJAX_OFFLINE"
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
            f"weights {name!r} are not in the cache ({target} is {state}) and COLORJAX_OFFLINE is "
            f"set. Fix: download them on a connected machine (`colorjax weights download {name}`) "
            f"and copy the file to {target}, or unset COLORJAX_OFFLINE"
        )
    if not remote:
        raise WeightsError(
            f"weights {name!r} are bundled but the bundled file is missing from "
            f"{Path(bundled_dir or WEIGHTS_DIR)} and no download URL is listed; reinstall colorjax"
        )
    try:
        ensure_output_dir(target.parent, "the weights cache")
    except OutputPathError as err:
        raise DownloadError(
            f"cannot download weights {name!r}: {err}. The cache is $COLORJAX_HOME, else "
            "$XDG_CACHE_HOME/colorjax, else ~/.cache/colorjax; set COLORJAX_HOME to a writable "
            "folder"
        ) from err
    with _download_lock(target):
        # Another process may have fetched the file while this one waited for the lock.
        if target.is_file() and sha256_file(target) == expected.lower():
            return target
        return _download_entry(
            entry,
            target,
            remote,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            progress=progress,
        )


@contextlib.contextmanager
def _download_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock so concurrent processes never write the same .part file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): concurrent downloads of one file are not guarded
        yield
        return
    # The lock file stays (empty): deleting it would let a waiting process lock a stale inode.
    with open(target.with_name(f".{target.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download_entry(
    entry: Mapping[str, Any],
    target: Path,
    remote: list[str],
    *,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool | None,
) -> Path:
    """Download an entry from its URLs in order into target and verify its sha256."""
    name, expected = entry["name"], entry["sha256"]
    failures: list[str] = []
    hash_error: WeightsError | None = None
    part = target.with_name(target.name + ".part")
    for url in remote:
        try:
            # A .part left by an earlier run may hold someone else's bytes: if the resumed file
            # fails the hash, fetch the whole file once more before blaming the server.
            for _ in range(2 if part.exists() else 1):
                download(
                    url,
                    target,
                    retries=retries,
                    backoff=backoff,
                    timeout=timeout,
                    progress=progress,
                )
                if sha256_file(target) == expected.lower():
                    return target
            _check_hash(target, expected, source=f"{name!r} from {url}", delete=True)
        except WeightsError as err:
            hash_error = hash_error or err
            failures.append(f"{url}: sha256 mismatch")
        except DownloadError as err:
            failures.append(str(err))
    if hash_error is not None:
        raise hash_error
    if len(failures) == 1:
        raise DownloadError(failures[0])
    raise DownloadError(f"every URL for weights {name!r} failed: " + " | ".join(failures))


def verify_weights(
    name: str | None = None,
    manifest: str | os.PathLike | Mapping | None = None,
    *,
    env: Mapping[str, str] | None = None,
    bundled_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Re-hash bundled and cached files; one row per file: name, path, status, expected, actual."""
    entries = [get_entry(name, manifest)] if name else load_manifest(manifest)["weights"]
    rows: list[dict[str, Any]] = []
    for entry in entries:
        if entry.get("format") == "pytorch-state-dict":
            from colorjax.pth_weights import verify_row

            rows.append(verify_row(entry, env))
            continue
        paths = [
            _bundled_file(url, bundled_dir) for url in entry["urls"] if url.startswith("bundled:")
        ]
        paths.append(cache_path(entry, env))
        found = False
        for path in paths:
            if not path.is_file():
                continue
            found = True
            actual = sha256_file(path)
            ok = actual == entry["sha256"].lower()
            rows.append(
                {
                    "name": entry["name"],
                    "path": str(path),
                    "status": "ok" if ok else "corrupted",
                    "expected": entry["sha256"],
                    "actual": actual,
                }
            )
        if not found:
            rows.append(
                {
                    "name": entry["name"],
                    "path": str(paths[-1]),
                    "status": "missing",
                    "expected": entry["sha256"],
                    "actual": None,
                }
            )
    return rows


# ---------------------------------------------------------------------------- models


def _abstract_variables(model: Any, working_size: int) -> dict[str, Any]:
    """Return the shapes model.init would create, without computing anything."""
    import jax
    import jax.numpy as jnp

    stride = int(getattr(model, "stride", 1) or 1)
    size = working_size if working_size % stride == 0 else stride * max(1, working_size // stride)
    key = jax.random.PRNGKey(0)
    sample = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": key, "dropout": key}, x), sample)


def check_variables(
    model: Any, variables: Mapping[str, Any], working_size: int, *, model_name: str = "the model"
) -> None:
    """Raise WeightsError unless every parameter's path and shape matches model.init's."""
    abstract = _abstract_variables(model, working_size)
    expected = {k: tuple(v.shape) for k, v in _flatten(abstract).items()}
    actual = {k: tuple(np.shape(v)) for k, v in _flatten(variables).items()}
    missing = sorted(set(expected) - set(actual))
    # A generator-only GAN file is enough for inference: the discriminator may be left out whole.
    disc = [k for k in expected if k.startswith("params/discriminator/")]
    if disc and all(k in missing for k in disc):
        missing = [k for k in missing if not k.startswith("params/discriminator/")]
    unexpected = sorted(set(actual) - set(expected))
    wrong = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    if not (missing or unexpected or wrong):
        return
    details = (
        [f"missing {k} {expected[k]}" for k in missing[:3]]
        + [f"unexpected {k} {actual[k]}" for k in unexpected[:3]]
        + [f"{k}: file {actual[k]} vs model {expected[k]}" for k in wrong[:3]]
    )
    raise WeightsError(
        f"weights do not fit {model_name}: {len(missing)} missing, {len(unexpected)} unexpected, "
        f"{len(wrong)} wrong-shape parameters ({'; '.join(details)}). The file is for another "
        "architecture or configuration; use weights made for this model"
    )


def load_pretrained(
    name_or_path: str | os.PathLike | None = None,
    family: str | None = None,
    manifest: str | os.PathLike | Mapping | None = None,
    **resolve_kwargs: Any,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Return (model, variables, meta) for a manifest name, a .safetensors path, or the default."""
    from colorjax.models import create_model

    name = None
    if name_or_path is None:
        name = default_entry(family, manifest)["name"]
    elif not _looks_like_path(name_or_path):
        name = str(name_or_path)
    path = resolve_weights(name or name_or_path, manifest, **resolve_kwargs)
    variables, meta = load_weights(path)
    try:
        model = create_model(meta["model"], **meta["overrides"])
    except ConfigError as err:
        raise WeightsError(
            f"{path} was made for model {meta['model']!r} with overrides {meta['overrides']}, "
            f"which this colorjax cannot build ({err}); upgrade colorjax or use other weights"
        ) from err
    check_variables(
        model, variables, meta["working_size"], model_name=f"model {meta['model']!r} ({path})"
    )
    meta["path"] = str(path)
    meta["name"] = name
    return model, variables, meta


# ---------------------------------------------------------------------------- export


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
    from colorjax.checkpoint import load_inference_params

    workdir = Path(workdir)
    if name is None:
        name = workdir.resolve().name
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"weights name {name!r} is invalid; pass --name with letters, digits, '.', '_', '-'"
        )
    ensure_output_dir(out_dir, "--out")
    out_path = Path(out_dir) / f"{name}.safetensors"
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
    training = _training_info(workdir, config, step)
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
        "family": _entry_family({"model": config.model.name}),
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


def add_to_manifest(path: str | os.PathLike, entry: Mapping[str, Any]) -> Path:
    """Add (or replace, by name) an entry in a manifest.json, creating the file if needed."""
    path = Path(path)
    data = (
        load_manifest(path)
        if path.is_file()
        else {"format_version": MANIFEST_VERSION, "weights": []}
    )
    _check_entry(entry, f"new entry for {path}")
    data["weights"] = [e for e in data["weights"] if e["name"] != entry["name"]] + [dict(entry)]
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
    return path


def _training_info(workdir: Path, config: Any, step: int | None) -> dict[str, Any]:
    """Collect what the header records about training: config, data source and step."""
    info: dict[str, Any] = {"workdir": str(workdir.resolve())}
    with contextlib.suppress(AttributeError):
        info["data"] = config.data.source
    with contextlib.suppress(AttributeError, TypeError):
        info["config"] = config.to_dict()
    info["step"] = step if step is not None else _latest_step(workdir)
    info["eval"] = _last_eval(workdir, info["step"])
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


def _latest_step(workdir: Path) -> int | None:
    """Return the highest numeric checkpoint folder name, or None if there is none."""
    folder = workdir / "checkpoints"
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(steps) if steps else None


# ---------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `colorjax weights list|download|verify|export|import` arguments."""
    parser.add_argument("--manifest", help="manifest.json to use (default: the packaged one)")
    sub = parser.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="list the weights in the manifest")
    download_parser = sub.add_parser("download", help="download weights into the cache")
    download_parser.add_argument("names", nargs="+", metavar="NAME")
    download_parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES)
    verify_parser = sub.add_parser("verify", help="re-hash bundled and cached weights")
    verify_parser.add_argument("name", nargs="?", metavar="NAME")
    export_parser = sub.add_parser("export", help="turn a training checkpoint into weights")
    export_parser.add_argument("--workdir", required=True, help="training run folder")
    export_parser.add_argument(
        "--name", default=None, help="name of the weights (default: the work dir's name)"
    )
    export_parser.add_argument("--out", default=".", help="output folder (default: .)")
    export_parser.add_argument("--step", type=int, default=None, help="checkpoint step")
    export_parser.add_argument("--dtype", choices=STORAGE_DTYPES, default="float32")
    export_parser.add_argument("--url", action="append", help="download URL(s) for the entry")
    export_parser.add_argument(
        "--include-discriminator", action="store_true", help="keep GAN discriminator params"
    )
    export_parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing NAME.safetensors/.json"
    )
    export_parser.add_argument(
        "--no-ema",
        dest="ema",
        action="store_false",
        help="export the last trained parameters, not their (debiased) moving average",
    )
    from colorjax.pth_weights import configure_import_parser

    configure_import_parser(sub)


def _human_size(size: Any) -> str:
    """Format a byte count for the listing."""
    if not isinstance(size, int):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def _iter_list_rows(manifest: Any) -> Iterator[str]:
    """Yield the lines of `colorjax weights list`."""
    entries = load_manifest(manifest)["weights"]
    if not entries:
        yield "no weights in the manifest"
        return
    # Columns as wide as their longest value (names are 30+ characters).
    wide = max(len(e["name"]) + 2 for e in entries)
    model_wide = max(len("MODEL"), *(len(e["model"]) for e in entries))
    yield f"{'NAME':{wide}} {'MODEL':{model_wide}} {'SIZE':>10}  STATUS     DESCRIPTION"
    defaults = False
    for entry in entries:
        bundled = any(
            url.startswith("bundled:") and _bundled_file(url, None).is_file()
            for url in entry["urls"]
        )
        status = "bundled" if bundled else "cached" if cache_path(entry).is_file() else "remote"
        name = entry["name"] + (" *" if entry.get("default") else "")
        defaults = defaults or bool(entry.get("default"))
        yield (
            f"{name:{wide}} {entry['model']:{model_wide}} {_human_size(entry.get('size')):>10}  "
            f"{status:10} "
            f"{entry.get('description', '')}"
        )
    if defaults:
        yield "* the default of its family: used when no --weights is given"


def run(args: argparse.Namespace) -> int:
    """Run a `colorjax weights` action; returns the exit code."""
    manifest = args.manifest
    if args.weights_command == "list":
        for line in _iter_list_rows(manifest):
            print(line)
        return 0
    if args.weights_command == "download":
        for name in args.names:
            print(resolve_weights(name, manifest, retries=args.retries))
        return 0
    if args.weights_command == "verify":
        bad = 0
        rows = verify_weights(args.name, manifest)
        if not rows:
            print("no weights in the manifest")
        for row in rows:
            print(f"{row['status']:10} {row['name']:28} {row['path']}")
            if row["status"] == "corrupted":
                bad += 1
                print(f"           expected {row['expected']}, got {row['actual']}")
        if bad:
            print(f"{bad} corrupted file(s); run `colorjax weights download NAME` to replace them")
        return 1 if bad else 0
    if args.weights_command == "import":
        from colorjax.pth_weights import run_import

        return run_import(args)
    if args.weights_command == "export":
        path, entry = export_checkpoint(
            args.workdir,
            args.name,
            args.out,
            step=args.step,
            include_discriminator=args.include_discriminator,
            dtype=args.dtype,
            urls=args.url,
            overwrite=args.overwrite,
            ema=args.ema,
        )
        argv = getattr(args, "argv", None)  # set by colorjax.cli.main
        if argv:
            commands = [entry["training_command"], shlex.join(["colorjax", *argv])]
            entry["training_command"] = " && ".join(c for c in commands if c)
        entry_path = path.with_suffix(".json")
        atomic_write_bytes(entry_path, (json.dumps(entry, indent=2) + "\n").encode())
        manifest_path = add_to_manifest(path.parent / USER_MANIFEST, entry)
        print(f"wrote {path}\nwrote manifest entry {entry_path}, added to {manifest_path}")
        print(
            f"use it by name: colorjax colorize PHOTOS --manifest {manifest_path} "
            f"--weights {entry['name']}"
        )
        return 0
    raise ConfigError(f"unknown weights action {args.weights_command!r}")
