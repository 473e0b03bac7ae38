"""A real Radicale CalDAV server on loopback for tests: htpasswd auth, one user, a free port, a temporary
directory. Started by a session fixture of the tests that need one; stopped at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


class Unavailable(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def radicale_argv() -> list[str] | None:
    """The Debian package's `radicale`, else the Python package in this interpreter."""
    found = shutil.which("radicale") or ("/usr/bin/radicale" if os.path.exists("/usr/bin/radicale") else None)
    if found:
        return [found]
    try:
        import radicale  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "radicale"]


def start(root: Path, user: str, password: str) -> tuple[str, callable]:
    """Start Radicale with `user`/`password`; → (base URL of the user's collections, stop)."""
    argv = radicale_argv()
    if argv is None:
        raise Unavailable("radicale is not installed (scripts/install-system-deps installs it)")
    port = free_port()
    (root / "users").write_text(f"{user}:{password}\n")
    (root / "config").write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n"
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {root / 'users'}\nhtpasswd_encryption = plain\n"
        f"[storage]\nfilesystem_folder = {root / 'collections'}\n"
        "[rights]\ntype = owner_only\n[web]\ntype = none\n[logging]\nlevel = warning\n"
    )
    log = open(root / "radicale.log", "w")
    process = subprocess.Popen([*argv, "--config", str(root / "config")], stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop()
                raise Unavailable(f"radicale did not start: {(root / 'radicale.log').read_text()}") from None
            time.sleep(0.1)
    return f"http://127.0.0.1:{port}/{user}/", stop
