"""Atomic file writes: a temporary file beside the target, renamed over it; stale
temporary files of killed writers are removed by the next successful write."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
import time

__all__ = ["check_writable", "remove_stale_temps", "write_atomic"]

# temporary files written before they carried their writer's process id are removed when
# older than this (their writer cannot be asked whether it is still running)
_UNTAGGED_STALE_S = 3600.0


def _prefix(path: pathlib.Path) -> str:
    return f".{path.name}."


def _open_temp(path: pathlib.Path) -> tuple[int, str, pathlib.Path]:
    """A new temporary file beside ``path``, named ``.<name>.<pid>.<random>.tmp``; errors
    name the path and the folder."""
    folder = path.parent if str(path.parent) else pathlib.Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=folder
        )
    except OSError as e:
        raise PermissionError(
            f"cannot save to {path}: folder {folder} is not writable ({e})"
        ) from e
    return fd, tmp, folder


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process: maybe another thread writing now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[pathlib.Path]:
    """Remove temporary files of ``path`` left by writers that were killed mid-write.

    A file is stale when the process that created it no longer runs (its id is in the
    name), or, for files without an id, when it is older than an hour. Returns the
    removed paths.
    """
    path = pathlib.Path(path)
    folder = path.parent if str(path.parent) else pathlib.Path(".")
    prefix, removed = _prefix(path), []
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for p in candidates:
        if not p.name.endswith(".tmp"):
            continue
        middle = p.name[len(prefix) : -len(".tmp")].split(".")
        if len(middle) == 2 and middle[0].isdigit():
            stale = not _alive(int(middle[0]))
        elif len(middle) == 1:
            try:
                stale = time.time() - p.stat().st_mtime > _UNTAGGED_STALE_S
            except OSError:
                continue
        else:
            continue
        if stale:
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def write_atomic(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, flushed to disk, then renamed
    over ``path``: a crash never leaves a half-written ``path``. After the rename, stale
    temporary files of ``path`` (from writers that were killed) are removed.
    """
    path = pathlib.Path(path)
    fd, tmp, folder = _open_temp(path)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would (mkstemp makes it 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    remove_stale_temps(path)
    return path


def _fsync_dir(folder: pathlib.Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike) -> None:
    """Raise now, before any work, if ``path`` cannot be written (folder missing or
    read-only)."""
    path = pathlib.Path(path)
    fd, tmp, _ = _open_temp(path)
    os.close(fd)
    pathlib.Path(tmp).unlink(missing_ok=True)
