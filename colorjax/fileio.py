"""Atomic file writes: a temporary file in the same folder, then os.replace.

Temporary files are named `.NAME.PID@HOST.RANDOM.tmp`. A process killed mid-write (kill -9,
power loss) leaves one behind; the first write into that folder by a later process removes every
such file whose writer is no longer running on this host, so they never pile up.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from colorjax.errors import OutputPathError

# .NAME.PID@HOST.RANDOM.tmp (ours) and .NAME.RANDOM.tmp (written before PIDs were recorded).
_TMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[A-Za-z0-9_]+\.tmp$")
_LEGACY_TMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_LEGACY_MAX_AGE_S = 3600.0  # no live writer holds a temporary file for an hour
_cleaned: set[Path] = set()


def child_path(folder: str | os.PathLike, name: str, what: str) -> Path:
    """`folder / name`, proven to stay inside `folder`; ValueError naming `what` otherwise.

    Every path built from a name that came from a file, a manifest or a request goes through
    here: a name with a separator, '..', a leading dot or a NUL is refused. (A symlink already
    at the path is safe: atomic writes and deletes replace or remove the link, not its target.)
    """
    bad = (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or any(ch in name for ch in ("/", "\\", "\0"))
        or os.path.isabs(name)
    )
    base = Path(folder)
    path = base / name
    if bad or path.parent != base:
        raise OutputPathError(
            f"{what} {name!r} would name a path outside {base}; names may hold letters, "
            "digits, '.', '_' and '-' only (no '/', '..' or leading dot). Fix the name"
        )
    return path


def _host() -> str:
    """This machine's short host name, restricted to characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:32]


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a foreign one counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _is_stale(path: Path, host: str, now: float) -> bool:
    """Whether a temporary file of ours was left by a writer that is gone."""
    match = _TMP_RE.match(path.name)
    if match:
        return match["host"] == host and not _pid_alive(int(match["pid"]))
    if _LEGACY_TMP_RE.match(path.name):
        with contextlib.suppress(OSError):
            return now - path.stat().st_mtime > _LEGACY_MAX_AGE_S
    return False


def clean_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files of our naming in folder whose writer died; return them."""
    folder = Path(folder)
    removed: list[Path] = []
    host, now = _host(), time.time()
    try:
        candidates = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    except OSError:
        return removed
    for path in candidates:
        if _is_stale(path, host, now):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def ensure_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Create a folder for outputs and prove it writable; OutputPathError names what is wrong.

    Commands call this before their work, so a bad -o/--out/--workdir fails in a second, not
    after an hour of computation. `what` names the option for the message (e.g. "--out").
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a folder; pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(
            dir=path, prefix=f".write-test.{os.getpid()}@{_host()}.", suffix=".tmp"
        )
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        if isinstance(err, (FileExistsError, NotADirectoryError)):
            reason = "a part of the path is a file"
        raise OutputPathError(
            f"{what} {path} cannot be used as an output folder ({reason}); pass a writable folder"
        ) from err
    return path


def _default_file_mode() -> int:
    """Permissions a plain open() would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write bytes so that readers see the old file or the whole new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.absolute()
    if folder not in _cleaned:  # once per folder and process: a folder of 10,000 outputs
        _cleaned.add(folder)
        clean_stale_temp_files(folder)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}@{_host()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            # A crash right after the rename must not leave an empty file behind.
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_file_mode())  # mkstemp creates 0600; outputs get umask perms
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically (see atomic_write_bytes)."""
    atomic_write_bytes(path, text.encode("utf-8"))
