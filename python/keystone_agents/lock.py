"""Non-blocking flock: overlapping runs skip; a lock left by a dead process never blocks (the kernel drops
flocks with the process)."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Yield True holding the lock, or False if another live process holds it. The holder's pid is
    written into the file for humans."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        _write_pid(fd)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_pid(fd: int) -> None:
    """The holder's pid, for humans; a full disk does not stop the run over it."""
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass


@contextmanager
def wait_lock(path: Path, timeout: float | None, on_wait=None, poll: float = 0.2) -> Iterator[bool]:
    """Like `try_lock`, but wait up to `timeout` seconds (None: forever; 0: do not wait) for the holder to
    let go. `on_wait(holder_pid_text)` is called once when the lock is found held. Yields False on timeout."""
    import time

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    yield False
                    return
                if not told and on_wait is not None:
                    told = True
                    try:
                        on_wait(os.pread(fd, 32, 0).decode(errors="replace").strip())
                    except OSError:
                        on_wait("")
                time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
        _write_pid(fd)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class LockTimeout(Exception):
    """The lock stayed held by another process for longer than the caller would wait."""


class FileLock:
    """An exclusive flock that waits (up to `timeout` seconds) and can be let go for a while.

    Guards read-modify-write transactions on a shared file. TASKS.yaml is written by the loop, the scheduler
    and humans' tools: the loop holds the lock for its whole run except while a provider executes a task
    (`with lock.released(): ...`), the scheduler for its reload-append-save.
    """

    def __init__(self, path: Path, timeout: float = 60.0):
        self.path, self.timeout = path, timeout
        self._fd: int | None = None

    def acquire(self) -> None:
        import time

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(f"{self.path} is still locked after {self.timeout:.0f} s") from None
                time.sleep(0.02)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @contextmanager
    def released(self) -> Iterator[None]:
        held = self._fd is not None
        self.release()
        try:
            yield
        finally:
            if held:
                self.acquire()

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold(path: Path, timeout: float = 60.0) -> FileLock:
    """`with hold(path):` — a short transaction under the file's lock."""
    return FileLock(path, timeout)
