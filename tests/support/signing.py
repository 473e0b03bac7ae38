"""Real SSH signing keys for the git-identity tests: ssh-keygen keys, an ssh-agent holding one, and
`git verify-commit` against an allowed-signers file."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Key:
    private: Path

    @property
    def public(self) -> str:
        return Path(str(self.private) + ".pub").read_text().strip()


def make_key(directory: Path, name: str, passphrase: str = "") -> Key:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(path)], check=True)
    return Key(path)


class SshAgent:
    """A real ssh-agent on a socket in `directory`, holding `key`."""

    def __init__(self, directory: Path, key: Key):
        self.socket = directory / "agent.sock"
        proc = subprocess.run(["ssh-agent", "-a", str(self.socket)], capture_output=True, text=True, check=True)
        pid_line = next(part for part in proc.stdout.split(";") if "SSH_AGENT_PID=" in part)
        self.pid = int(pid_line.split("=")[1])
        subprocess.run(["ssh-add", "-q", str(key.private)], check=True, capture_output=True,
                       env={**os.environ, "SSH_AUTH_SOCK": str(self.socket)})

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def verify_commit(repo: Path, commit: str, allowed_signers: Path) -> subprocess.CompletedProcess:
    """`git verify-commit` with only `allowed_signers` trusted (no user or system config in the way)."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    env.pop("GIT_CONFIG_COUNT", None)
    return subprocess.run(["git", "-c", f"gpg.ssh.allowedSignersFile={allowed_signers}", "verify-commit", "--raw",
                           commit], cwd=repo, capture_output=True, text=True, env=env)
