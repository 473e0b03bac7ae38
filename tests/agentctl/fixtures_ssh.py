"""A real OpenSSH server on loopback for agentctl's forwarding tests.

sshd runs in the foreground on a free high port with its own host key; a generated client key is the only
authorized one; the client uses an ssh_config (passed to agentctl through the host config's `sshCommand`).
No ForceCommand: the remote side runs the command string through the login shell, as a real host does.
The server's `SetEnv` puts the "remote host's" bin directory first on PATH and points AGENTCTL_CONFIG at the
remote host's configuration; the `agentctl` found there records its argv, then runs the real agentctl.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.sshd import SshServer as TestSshd
from tests.support.sshd import sshd_unavailable_reason


REMOTE_AGENTCTL = """#!/bin/sh
# The remote host's agentctl: record the argv it received (one JSON line), then run the real one.
"{python}" -c 'import json, sys; open(sys.argv[1], "a").write(json.dumps(sys.argv[2:]) + "\\n")' "$AGENTCTL_REMOTE_LOG" "$@"
exec "{agentctl}" "$@"
"""


@dataclass
class SshServer:
    sshd: TestSshd
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

    def stop(self) -> None:
        self.sshd.stop()

    def clear_log(self) -> None:
        self.remote_log.write_text("")


def start_sshd(root: Path, remote_path: str, remote_env: dict[str, str]) -> SshServer:
    """The shared test sshd, with a login environment that makes it look like the remote host."""
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(reason)
    root.mkdir(parents=True, exist_ok=True)
    env_line = " ".join(f'"{k}={v}"' for k, v in {"PATH": remote_path, **remote_env}.items())
    sshd = TestSshd(root, extra_config=[f"SetEnv {env_line}"])
    sshd.start()
    return SshServer(
        sshd, "remotebox", sshd.write_client_config(root / "ssh_config", "remotebox"),
        Path(remote_env["AGENTCTL_REMOTE_LOG"]), Path(remote_env["AGENTCTL_CONFIG"]), root,
    )


def remote_agentctl(bin_dir: Path, agentctl: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "agentctl"
    script.write_text(REMOTE_AGENTCTL.format(python=sys.executable, agentctl=agentctl))
    script.chmod(0o755)
