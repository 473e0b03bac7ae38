"""A real OpenSSH server on loopback for agentctl's forwarding tests.

sshd runs in the foreground on a free high port with its own host key; a generated client key is the only
authorized one; the client uses an ssh_config (passed to agentctl through the host config's `sshCommand`).
No ForceCommand: the remote side runs the command string through the login shell, as a real host does.
The server's `SetEnv` puts the "remote host's" bin directory first on PATH and points AGENTCTL_CONFIG at the
remote host's configuration; the `agentctl` found there records its argv, then runs the real agentctl.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

REMOTE_AGENTCTL = """#!/bin/sh
# The remote host's agentctl: record the argv it received (one JSON line), then run the real one.
"{python}" -c 'import json, sys; open(sys.argv[1], "a").write(json.dumps(sys.argv[2:]) + "\\n")' "$AGENTCTL_REMOTE_LOG" "$@"
exec "{agentctl}" "$@"
"""


@dataclass
class SshServer:
    port: int
    alias: str
    ssh_config: Path
    remote_log: Path
    remote_config: Path
    root: Path

    @property
    def ssh_command(self) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config)]

    def remote_argvs(self) -> list[list[str]]:
        import json

        if not self.remote_log.exists():
            return []
        return [json.loads(line) for line in self.remote_log.read_text().splitlines() if line.strip()]

    def clear_log(self) -> None:
        self.remote_log.write_text("")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def start_sshd(root: Path, remote_path: str, remote_env: dict[str, str]) -> tuple[subprocess.Popen, SshServer]:
    if not os.path.exists(SSHD) or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("OpenSSH server not installed (Debian openssh-server)")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    root.mkdir(parents=True, exist_ok=True)
    _keygen(root / "host_key")
    _keygen(root / "client_key")
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    os.chmod(root / "authorized_keys", 0o600)
    port = _free_port()
    env_line = " ".join(f'"{k}={v}"' for k, v in {"PATH": remote_path, **remote_env}.items())
    (root / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root / 'host_key'}
AuthorizedKeysFile {root / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile {root / 'sshd.pid'}
SetEnv {env_line}
"""
    )
    (root / "ssh_config").write_text(
        f"""Host remotebox
  HostName 127.0.0.1
  Port {port}
  User {user}
  IdentityFile {root / 'client_key'}
  IdentitiesOnly yes
  UserKnownHostsFile {root / 'known_hosts'}
  StrictHostKeyChecking accept-new
  BatchMode yes
  LogLevel ERROR
"""
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # the privilege-separation directory sshd needs as root
    check = subprocess.run([SSHD, "-t", "-f", str(root / "sshd_config")], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"sshd cannot run here: {check.stderr.strip()[:200]}")
    proc = subprocess.Popen([SSHD, "-D", "-f", str(root / "sshd_config"), "-E", str(root / "sshd.log")])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.skip(f"sshd exited: {(root / 'sshd.log').read_text()[:200]}")
            time.sleep(0.05)
    server = SshServer(port, "remotebox", root / "ssh_config", Path(remote_env["AGENTCTL_REMOTE_LOG"]),
                       Path(remote_env["AGENTCTL_CONFIG"]), root)
    return proc, server


def remote_agentctl(bin_dir: Path, agentctl: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "agentctl"
    script.write_text(REMOTE_AGENTCTL.format(python=sys.executable, agentctl=agentctl))
    script.chmod(0o755)
