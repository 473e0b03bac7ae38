"""A real OpenSSH server on 127.0.0.1 for tests, and a real ssh-agent holding the client key.

The server has its own host key, sshd_config and authorized_keys; it accepts only public-key logins of the
user running the tests. As root it runs as a normal root sshd (it needs the privilege-separation directory
/run/sshd); as any other user it runs unprivileged, which OpenSSH supports for logins as that same user.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself and insists on an absolute path


def sshd_unavailable_reason() -> str | None:
    if not Path(SSHD).exists():
        return "OpenSSH server not installed (scripts/install-system-deps installs openssh-server)"
    for tool in ("ssh", "ssh-agent", "ssh-add", "ssh-keygen", "git"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        try:
            Path("/run/sshd").mkdir(mode=0o755)
        except OSError as exc:
            return f"cannot create sshd's privilege-separation directory /run/sshd: {exc}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, timeout=30
    )
    return path


class SshServer:
    """`extra_config` lines are appended to sshd_config (e.g. `SetEnv` for a simulated remote host)."""

    def __init__(self, root: Path, extra_config: list[str] | None = None):
        self.root = root
        self.user = getpass.getuser()
        self.port = free_port()
        self.host_key = keygen(root / "ssh_host_ed25519_key", "test-host")
        self.client_key = keygen(root / "client_ed25519", "notes-sync-test")
        self.authorized_keys = root / "authorized_keys"
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        self.authorized_keys.chmod(0o600)
        self.config = root / "sshd_config"
        self.log_file = root / "sshd.log"
        self.pid_file = root / "sshd.pid"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.pid_file}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    f"AllowUsers {self.user}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    # the key files live under /tmp (world-writable): skip the ownership walk up to /
                    "StrictModes no",
                    "AllowTcpForwarding no",
                    "X11Forwarding no",
                    "PrintMotd no",
                    "LogLevel VERBOSE",
                    *(extra_config or []),
                    "",
                ]
            )
        )
        self.process: subprocess.Popen | None = None

    @property
    def public_key(self) -> str:
        return Path(f"{self.client_key}.pub").read_text().strip()

    def write_client_config(self, path: Path, alias: str) -> Path:
        """An ssh_config naming this server `alias`, logging in with the client key (no agent needed)."""
        path.write_text(
            f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n  User {self.user}\n"
            f"  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.root / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n"
            "  BatchMode yes\n  LogLevel ERROR\n"
        )
        return path

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        subprocess.run([SSHD, "-t", "-f", str(self.config)], check=True, capture_output=True, timeout=30)
        self.process = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {self.log_file.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 15 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class SshAgent:
    """A real ssh-agent on its own socket, holding the given keys."""

    def __init__(self, root: Path):
        self.socket = root / "agent.sock"
        self.process = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(self.socket)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ssh-agent did not start")
            time.sleep(0.02)

    def add(self, key: Path) -> None:
        env = {**os.environ, "SSH_AUTH_SOCK": str(self.socket)}
        subprocess.run(["ssh-add", "-q", str(key)], check=True, env=env, capture_output=True, timeout=30)

    def keys(self) -> str:
        env = {**os.environ, "SSH_AUTH_SOCK": str(self.socket)}
        return subprocess.run(["ssh-add", "-L"], env=env, capture_output=True, text=True, timeout=30).stdout

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
