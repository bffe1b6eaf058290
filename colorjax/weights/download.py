"""Fetching pretrained weights: bundled, cached, or downloaded to the cache; always sha256-checked.

Transfers are delegated: ``hf://owner/repo[@revision]/path`` through
``huggingface_hub.hf_hub_download`` (its cache, resume, locking and ``HF_HUB_OFFLINE``),
``http(s)://`` through ``pooch`` (a complete file or none, via a temporary file), ``file://``
by a local copy. This module adds what colorjax promises on top: the cache location
(``$COLORJAX_HOME``, else ``$XDG_CACHE_HOME/colorjax``, else ``~/.cache/colorjax``),
``COLORJAX_OFFLINE``, retries with backoff on transient errors only (a 404 fails at once), a
full sha256 check before any byte is parsed (a bad file is deleted), and one process at a time
per file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from colorjax.errors import DownloadError, OfflineError, OutputPathError, WeightsError
from colorjax.fileio import child_path, ensure_output_dir
from colorjax.weights.fileformat import check_hash, sha256_file
from colorjax.weights.manifest import (
    WEIGHTS_DIR,
    PretrainedCfg,
    as_cfg,
)

logger = logging.getLogger(__name__)

DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 1.0
DEFAULT_TIMEOUT = 30.0
# HTTP statuses worth retrying besides 5xx: the server may recover; any other 4xx will not.
_RETRY_STATUS = {408, 425, 429}
_SCHEMES = ("http", "https", "file", "hf")


# ---------------------------------------------------------------------------- cache location


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    """Return the environment to read: the one passed in, else os.environ at call time."""
    return os.environ if env is None else env


def _truthy(value: str | None) -> bool:
    """Environment flag semantics: anything but '', 0, false, no, off."""
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


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
    return _truthy(_env(env).get("COLORJAX_OFFLINE"))


def cache_path(
    entry: PretrainedCfg | Mapping[str, Any], env: Mapping[str, str] | None = None
) -> Path:
    """Where the cache keeps an entry's verified file (the hash prefix keeps versions apart).

    The file is named after the entry's first alias when it has one: the name it was published
    under before `arch.tag` names, so caches filled by earlier versions stay valid.
    """
    cfg = as_cfg(entry)
    stem = cfg.aliases[0] if cfg.aliases else cfg.name
    version = cfg.sha256[:12] if cfg.pinned else "unpinned"
    # The manifest check refuses unsafe names; this proves it again where the path is made.
    return child_path(cache_dir(env) / "weights", f"{stem}-{version}.safetensors", "weights name")


def first_download_record(
    entry: PretrainedCfg | Mapping[str, Any], env: Mapping[str, str] | None = None
) -> Path:
    """Where the sha256 of an unpinned entry's first verified download is kept."""
    return cache_path(entry, env).with_suffix(".source-sha256")


def expected_sha256(
    entry: PretrainedCfg | Mapping[str, Any], env: Mapping[str, str] | None = None
) -> str | None:
    """The manifest's sha256, else the one recorded at the first download, else None."""
    cfg = as_cfg(entry)
    if cfg.pinned:
        return cfg.sha256
    record = first_download_record(cfg, env)
    if not record.is_file():
        return None
    recorded = record.read_text().strip().lower()
    if len(recorded) != 64 or any(c not in "0123456789abcdef" for c in recorded):
        raise WeightsError(
            f"the sha256 recorded for {cfg.name!r} at its first download ({record}) is damaged; "
            "delete that file and download the weights again"
        )
    return recorded


def check_hub_size(
    path: Path, entry: PretrainedCfg | Mapping[str, Any], *, delete: bool = True
) -> None:
    """WeightsError (a download deleted) unless its size rounds to the hub's `hub_size_mb`.

    The hub shows sizes in decimal units to three significant digits ("912 MB"); a file whose
    size would not be shown so is not the published one.
    """
    cfg = as_cfg(entry)
    if cfg.hub_size_mb is None:
        return
    size_mb = path.stat().st_size / 1e6
    shown = float(cfg.hub_size_mb)
    whole_digits = len(str(int(shown))) if shown >= 1 else 1
    tolerance = 0.5 * 10.0 ** (whole_digits - 3)
    if abs(size_mb - shown) > tolerance + 1e-9:
        fix = "import the official file"
        if delete:
            path.unlink(missing_ok=True)
            fix = "it was deleted; download it again, and if that fails the manifest's URL is wrong"
        raise WeightsError(
            f"{path.name} for {cfg.name!r} is {size_mb:.1f} MB where the hub lists {shown:g} MB, "
            f"so it is not the published file; {fix}"
        )


def bundled_file(url: str, bundled_dir: str | os.PathLike | None = None) -> Path:
    """Return the path of a 'bundled:FILENAME' URL inside the package weights folder."""
    filename = url.split(":", 1)[1]
    if not filename or "/" in filename or "\\" in filename or filename.startswith("."):
        raise WeightsError(f"bad bundled URL {url!r} in the manifest; use bundled:FILENAME")
    return Path(bundled_dir or WEIGHTS_DIR) / filename


def local_status(entry: PretrainedCfg | Mapping[str, Any]) -> str:
    """'bundled' (inside the package), 'cached' (verified in the cache) or 'remote'."""
    cfg = as_cfg(entry)
    if any(u.startswith("bundled:") and bundled_file(u).is_file() for u in cfg.urls):
        return "bundled"
    return "cached" if cache_path(cfg).is_file() else "remote"


# ---------------------------------------------------------------------------- one URL


class _RetryableError(Exception):
    """A transfer failed in a way a later attempt may not (5xx, throttling, a dropped link)."""


def _fetch_http(url: str, dest: Path, *, timeout: float, progress: bool | None, **_: Any) -> None:
    """Download an http(s) URL with pooch (a temporary file moved into place when complete)."""
    import pooch
    import requests

    show = sys.stderr.isatty() if progress is None else bool(progress)
    downloader = pooch.HTTPDownloader(
        progressbar=show, timeout=timeout, headers={"User-Agent": "colorjax"}
    )
    # pooch logs at INFO that the caller should pass known_hash: colorjax checks the sha256
    # itself (to name both hashes and delete the file), so that advice is noise here.
    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(max(level, logging.WARNING))
    try:
        pooch.retrieve(
            url, known_hash=None, fname=dest.name, path=dest.parent, downloader=downloader
        )
    except requests.HTTPError as err:
        code = err.response.status_code if err.response is not None else 0
        reason = err.response.reason if err.response is not None else ""
        if code >= 500 or code in _RETRY_STATUS:
            raise _RetryableError(f"HTTP {code} {reason}") from err
        raise DownloadError(
            f"cannot download {url}: HTTP {code} {reason}. The URL is wrong or the file was "
            f"removed; check the manifest URL or download the file by hand into {dest}"
        ) from err
    except requests.RequestException as err:
        # Resets, timeouts and bodies cut short are retried (from the start: pooch keeps no part).
        raise _RetryableError(str(err)) from err
    finally:
        pooch_logger.setLevel(level)


def _fetch_file(url: str, dest: Path, **_: Any) -> None:
    """Copy a file:// URL into place through a temporary file."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not source.is_file():
        raise DownloadError(f"cannot download {url}: no such file; check the manifest URL")
    part = dest.with_name(f".{dest.name}.part")
    try:
        shutil.copyfile(source, part)
        os.replace(part, dest)
    except OSError as err:
        part.unlink(missing_ok=True)
        raise _RetryableError(str(err)) from err


def parse_hf_url(url: str) -> tuple[str, str | None, str]:
    """'hf://owner/repo[@revision]/path/file' -> (repo_id, revision or None, path in the repo)."""
    parts = url.removeprefix("hf://").split("/")
    if len(parts) < 3 or not all(parts):
        raise WeightsError(
            f"bad Hugging Face URL {url!r} in the manifest; write hf://OWNER/REPO/PATH "
            "(or hf://OWNER/REPO@REVISION/PATH)"
        )
    repo, _, revision = parts[1].partition("@")
    return f"{parts[0]}/{repo}", revision or None, "/".join(parts[2:])


def _fetch_hf(
    url: str,
    dest: Path,
    *,
    timeout: float,
    env: Mapping[str, str] | None,
    expected: str | None = None,
    **_: Any,
) -> None:
    """Fetch through huggingface_hub's cache (under the colorjax cache) and link it into dest."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    from colorjax import __version__

    repo_id, revision, filename = parse_hf_url(url)
    # huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT once at import; honour them per call.
    offline = is_offline(env) or _truthy(_env(env).get("HF_HUB_OFFLINE"))
    try:
        cached = Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir(env) / "huggingface",
                local_files_only=offline,
                etag_timeout=timeout,
                endpoint=_env(env).get("HF_ENDPOINT") or None,  # read per call, like ours
                library_name="colorjax",
                library_version=__version__,
            )
        )
    except hf_errors.LocalEntryNotFoundError as err:
        if offline:
            raise OfflineError(
                f"{url} is not in the Hugging Face cache under {cache_dir(env) / 'huggingface'} "
                "and HF_HUB_OFFLINE or COLORJAX_OFFLINE is set; download it on a connected "
                "machine, or unset them"
            ) from err
        raise _RetryableError(str(err)) from err  # the Hub could not be reached
    except hf_errors.HfHubHTTPError as err:
        code = err.response.status_code if err.response is not None else 0
        if code >= 500 or code in _RETRY_STATUS:
            raise _RetryableError(f"HTTP {code}: {err}") from err
        raise DownloadError(
            f"cannot download {url}: {err}. Check the repository, revision and path in the "
            "manifest URL (private repositories need `hf auth login`)"
        ) from err
    if expected is not None and sha256_file(cached) != expected.lower():
        # A bad blob in the Hub cache would be served again: drop it with its snapshot link.
        blob = cached.resolve()
        cached.unlink(missing_ok=True)
        check_hash(blob, expected, source=url, delete=True)
    part = dest.with_name(f".{dest.name}.part")
    part.unlink(missing_ok=True)
    try:
        os.link(cached.resolve(), part)  # same file system: no second copy on disk
    except OSError:
        shutil.copyfile(cached, part)
    os.replace(part, dest)


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
    env: Mapping[str, str] | None = None,
    expected_sha256: str | None = None,
) -> Path:
    """Download an hf://, http(s) or file URL to dest (complete or absent), retrying on 5xx."""
    dest = Path(dest)
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise DownloadError(
            f"cannot download {url}: only hf://, http(s):// and file:// URLs are supported"
        )
    fetch: Callable[..., None] = {"file": _fetch_file, "hf": _fetch_hf}.get(scheme, _fetch_http)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)  # pooch would return a file left there instead of fetching it
    last_error: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            delay = backoff * 2 ** (attempt - 1)
            logger.warning("retrying %s in %.1fs (%s)", url, delay, last_error)
            time.sleep(delay)
        try:
            fetch(url, dest, timeout=timeout, progress=progress, env=env, expected=expected_sha256)
            return dest
        except _RetryableError as err:
            last_error = err
    raise DownloadError(
        f"cannot download {url} after {retries + 1} failed attempts (last error: {last_error}); "
        f"check your connection and retry, or download the file by hand into {dest}"
    )


# ---------------------------------------------------------------------------- one entry


@contextlib.contextmanager
def download_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock so concurrent processes never fetch the same file twice."""
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


def download_entry(
    cfg: PretrainedCfg,
    target: Path,
    *,
    env: Mapping[str, str] | None = None,
    **download_kwargs: Any,
) -> Path:
    """Download an entry from its remote URLs in order into target and verify its sha256.

    An unpinned entry (no sha256 in the manifest) is checked against the hash recorded at its
    first download, when there is one; the caller checks a first download (`check_hub_size`,
    then the state dict's structure) and records its hash.
    """
    remote = [u for u in cfg.urls if not u.startswith("bundled:")]
    expected = expected_sha256(cfg, env)
    failures: list[str] = []
    hash_error: WeightsError | None = None
    for url in remote:
        try:
            download(url, target, env=env, expected_sha256=expected, **download_kwargs)
            if expected is not None:
                check_hash(target, expected, source=f"{cfg.name!r} from {url}", delete=True)
            return target
        except WeightsError as err:
            hash_error = hash_error or err
            failures.append(f"{url}: sha256 mismatch")
        except DownloadError as err:
            if isinstance(err, OfflineError):
                raise
            failures.append(str(err))
    if hash_error is not None:
        raise hash_error
    if len(failures) == 1:
        raise DownloadError(failures[0])
    raise DownloadError(f"every URL for weights {cfg.name!r} failed: " + " | ".join(failures))


def ensure_cache_dir(folder: Path, name: str) -> None:
    """Create the cache folder, or say how to point COLORJAX_HOME at a writable one."""
    try:
        ensure_output_dir(folder, "the weights cache")
    except OutputPathError as err:
        raise DownloadError(
            f"cannot download weights {name!r}: {err}. The cache is $COLORJAX_HOME, else "
            "$XDG_CACHE_HOME/colorjax, else ~/.cache/colorjax; set COLORJAX_HOME to a writable "
            "folder"
        ) from err
