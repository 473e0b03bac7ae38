"""Atomic file replacement: temp file in the same directory, fsync, rename; the file mode is kept."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes | str, mode: int | None = None) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file, never a mix.

    The existing file's mode is kept; a new file gets `mode` (default 0o644 minus umask semantics are
    not applied: the caller says what it wants).
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        keep_mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        keep_mode = mode if mode is not None else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, keep_mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
