"""A fleet for agentctl tests: two local agents and one on another host reached through a real sshd.

- alpha: local, its user is the user running the tests → commands run directly;
- beta:  local, user agent-beta → commands go through `sudo -u agent-beta -- <helper> …` (recording stand-ins
         for sudo and the helper, which then run the command as the test user);
- gamma: host `remotebox` → forwarded with ssh to a real OpenSSH server on loopback, where the remote
         host's agentctl (real, with its own host config in which gamma is local) runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from keystone_agents import scaffold
from keystone_agents.agentctl.hostconfig import current_user
from keystone_agents.cli.ctl import cli as ctl_cli

from tests.conftest import installed_script
from tests.agentctl.fixtures_ssh import SshServer, remote_agentctl, start_sshd

STANDINS = Path(__file__).resolve().parent / "bin"


def _home(root: Path, name: str) -> Path:
    home = root / f"home-{name}"
    scaffold.init(home, scaffold.context(name, f"Agent {name.capitalize()}", f"{name}@example.com"))
    # Debian's nix would wrap sessions in `nix develop` (without flakes enabled); the wrap has its own test
    (home / "notes" / "flake.nix").unlink()
    return home


def _agent(name: str, home: Path, user: str, **extra) -> dict:
    return {
        "name": name, "user": user, "home": str(home), "notesDir": str(home / "notes"),
        "configPath": str(home / ".config/keystone-agent/config.json"), **extra,
    }


def _base_path() -> str:
    venv_bin = str(Path(installed_script("agentctl")).parent)
    return os.pathsep.join([str(STANDINS), venv_bin, "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"])


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory) -> SshServer:
    root = tmp_path_factory.mktemp("remotehost")
    remote_home = _home(root, "gamma")
    remote_config = root / "agentctl.json"
    remote_config.write_text(json.dumps({"hostName": "remotebox", "agents": [
        _agent("gamma", remote_home, current_user(), vncPort=5903, desktop=True),
    ]}))
    remote_bin = root / "bin"
    remote_agentctl(remote_bin, installed_script("agentctl"))
    env = {
        "AGENTCTL_CONFIG": str(remote_config),
        "AGENTCTL_REMOTE_LOG": str(root / "remote-argv.log"),
        "AGENTCTL_TEST_LOG": str(root / "remote-standins.log"),
        "AGENTCTL_TEST_REAL_KEYSTONE_AGENT": installed_script("keystone-agent"),
        "XDG_CONFIG_HOME": str(root / "xdg"),
    }
    server = start_sshd(root / "sshd", f"{remote_bin}{os.pathsep}{_base_path()}", env)
    server.remote_home = remote_home  # type: ignore[attr-defined]
    yield server
    server.stop()


@dataclass
class Fleet:
    root: Path
    config: Path
    homes: dict[str, Path]
    log: Path
    env: dict[str, str]
    ssh: SshServer

    def calls(self, prog: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [c for c in calls if prog is None or c["prog"] == prog]

    def argvs(self, prog: str) -> list[list[str]]:
        return [c["argv"] for c in self.calls(prog)]

    def clear(self) -> None:
        self.log.write_text("")
        self.ssh.clear_log()

    def run(self, *args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
        """The installed agentctl as a real subprocess."""
        return subprocess.run([installed_script("agentctl"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=input if input is not None else "")

    def invoke(self, *args: str):
        """agentctl through click's runner, with the same environment."""
        return CliRunner().invoke(ctl_cli, list(args), env=self.env, catch_exceptions=False)

    def show(self, agent: str, *extra: str) -> dict:
        result = self.run("show", agent, "--json", *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def fleet(tmp_path, ssh_server, monkeypatch) -> Fleet:
    homes = {"alpha": _home(tmp_path, "alpha"), "beta": _home(tmp_path, "beta")}
    config = tmp_path / "agentctl.json"
    config.write_text(json.dumps({
        "hostName": "testhost",
        "sshCommand": ssh_server.ssh_command,
        "agents": [
            _agent("alpha", homes["alpha"], current_user(), vncPort=5901, desktop=True),
            _agent("beta", homes["beta"], "agent-beta", helper=str(STANDINS / "agent-helper")),
            {"name": "gamma", "user": "agent-gamma", "home": "/home/agent-gamma", "host": "remotebox",
             "vncPort": 5903, "desktop": True},
        ],
    }, indent=2))
    log = tmp_path / "standins.log"
    env = {
        "PATH": _base_path(),
        "HOME": str(tmp_path / "admin-home"),
        "XDG_CONFIG_HOME": str(tmp_path / "admin-xdg"),
        "AGENTCTL_CONFIG": str(config),
        "AGENTCTL_TEST_LOG": str(log),
        "AGENTCTL_TEST_REAL_KEYSTONE_AGENT": installed_script("keystone-agent"),
        "LANG": "C.UTF-8",
    }
    for key, value in env.items():  # for click-runner calls and code that reads os.environ directly
        monkeypatch.setenv(key, value)
    for var in ("KEYSTONE_AGENT_CONFIG", "KEYSTONE_AGENT_HOME"):
        monkeypatch.delenv(var, raising=False)
    ssh_server.clear_log()
    (ssh_server.root.parent / "remote-standins.log").write_text("")
    # gamma's state on the remote host is shared by the session: start every test from "active"
    subprocess.run([installed_script("keystone-agent"), "resume", "--home", str(ssh_server.remote_home)],  # type: ignore[attr-defined]
                   capture_output=True, check=True)
    return Fleet(tmp_path, config, homes, log, env, ssh_server)
