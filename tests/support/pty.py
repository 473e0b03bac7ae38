"""Run a command with stderr (and stdout) on a pseudo-terminal, as a person at a terminal would see it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time


def run_on_tty(argv: list[str], env: dict, timeout: float = 120) -> tuple[int, str]:
    """(exit code, everything written to the terminal) of `argv` run with a pty as stdin, stdout and stderr."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if not data:
                    if proc.poll() is not None:
                        break
                    continue
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise TimeoutError(f"{argv} did not finish within {timeout}s")
    finally:
        os.close(master)
    code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
