"""The local broker's writer lock (coordination/store.py WriterLock): a FIFO queue of tickets in
<database>.lock that every broker process (or, in the listening broker, every connection's thread) passes
before its SQLite write transaction."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from keystone_agents.coordination.store import WriterLock


def tickets_taken(lock: WriterLock) -> int:
    return int.from_bytes(os.pread(lock.fd, 8, 0), "little")


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_waiters_enter_in_the_order_they_queued(tmp_path):
    database = tmp_path / "bus.sqlite3"
    holder = WriterLock(database)
    assert holder.path == tmp_path / "bus.sqlite3.lock"
    assert (os.stat(holder.path).st_mode & 0o777) == 0o600
    entered: list[int] = []

    def waiter(n: int) -> None:
        lock = WriterLock(database)  # its own open file, as each connection of the listening broker has
        try:
            with lock:
                entered.append(n)
                time.sleep(0.01)
        finally:
            lock.close()

    with holder:
        threads = []
        for n in range(6):
            thread = threading.Thread(target=waiter, args=(n,))
            thread.start()
            threads.append(thread)
            wait_for(lambda: tickets_taken(holder) == n + 2)  # queued before the next one starts
        time.sleep(0.2)
        assert entered == []  # nobody passes the holder
    for thread in threads:
        thread.join(timeout=20)
    assert entered == [0, 1, 2, 3, 4, 5]
    holder.close()


def test_a_dead_holder_does_not_block_the_queue(tmp_path):
    database = tmp_path / "bus.sqlite3"
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # a broker that dies inside its transaction
        try:
            lock = WriterLock(database)
            lock.__enter__()
            os.write(write_fd, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(write_fd)
    assert os.read(read_fd, 1) == b"x"
    os.close(read_fd)
    lock = WriterLock(database)
    got = threading.Event()

    def take() -> None:
        with lock:
            got.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    assert not got.wait(0.5)  # the holder is alive: the waiter waits
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert got.wait(20)  # the kernel released the dead broker's lock
    thread.join(timeout=20)
    lock.close()


def test_not_reentrant(tmp_path):
    lock = WriterLock(tmp_path / "bus.sqlite3")
    with lock:
        with pytest.raises(RuntimeError, match="not reentrant"):
            lock.__enter__()
    with lock:  # still usable afterwards
        pass
    lock.close()
