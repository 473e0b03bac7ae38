"""systemd's Accept=yes socket, as a process of its own: for every connection on SOCKET start ARGV (plus
`--database <the path in DB_FILE>`) as USER, with the accepted connection as its stdin and stdout.

A process and not a thread of the test process: the tests fork children (tests/support/asuser.py) that do
not exec, and a child forked while a thread is inside subprocess.Popen would hold Popen's exec-status pipe
open and stall it until the child exits.

    python -m tests.support.activator SOCKET USER DB_FILE LOG ARGV...
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def main() -> int:
    sock_path, user, db_file, log = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    argv = sys.argv[5:]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path.unlink(missing_ok=True)
    server.bind(str(sock_path))
    os.chmod(sock_path, 0o666)
    server.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # brokers are reaped by the kernel
    stderr = open(log, "ab")
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        database = db_file.read_text().strip() if db_file.exists() else ""
        extra = ["--database", database] if database else []
        subprocess.Popen(argv + extra, stdin=conn, stdout=conn, stderr=stderr, user=user, cwd="/",
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
