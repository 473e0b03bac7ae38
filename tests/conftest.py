"""Fixtures shared by every test: an agent home, the CLI runner, the installed scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from keystone_agents import scaffold
from keystone_agents.cli.agent import cli as agent_cli

REPO = Path(__file__).resolve().parents[1]
FAKEBIN = REPO / "tests" / "fakebin"  # stand-ins for hosted-service CLIs (claude, codex, gemini, gh)


def installed_script(name: str) -> str:
    """Path of a console script installed next to the running interpreter (the venv's bin/)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"console script {name!r} is not installed; run scripts/bootstrap")
    return found


@pytest.fixture
def agent_home(tmp_path: Path) -> Path:
    """A freshly scaffolded agent home for agent 'demo'."""
    home = tmp_path / "home"
    scaffold.init(home, scaffold.context("demo", "Demo Agent", "demo@example.com"))
    return home


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No configuration leaks in from the developer's environment."""
    for var in ("KEYSTONE_AGENT_CONFIG", "KEYSTONE_AGENT_HOME", "PROMETHEUS_TEXTFILE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "default-home"))
    # the stand-in provider CLIs are "installed": `validate` and the loop's preflight find them on PATH
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture
def run_agent(clean_env):
    """Invoke `keystone-agent` through click's runner: run_agent("tasks", "--home", h) → Result."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(agent_cli, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def agent_subprocess(clean_env):
    """Run the installed `keystone-agent` script as a real subprocess."""
    script = installed_script("keystone-agent")

    def run(*args: str, env: dict | None = None, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [script, *args], capture_output=True, text=True, env=full_env, timeout=timeout, **kwargs
        )

    return run


@pytest.fixture(scope="session")
def mail_server():
    """Real dovecot (IMAP, LMTP) + postfix (SMTP submission) on loopback with self-signed TLS, once per session
    (tests/support/mailserver.py); skips with the reason where they cannot run."""
    import tempfile

    from tests.support.mailserver import Unavailable, start

    # Not under pytest's basetemp: dovecot's unprivileged auth process must traverse every parent of its
    # passwd-file, and any pytest session that starts on this machine (another worktree, a nested run) resets
    # /tmp/pytest-of-<user> to 0700, which made logins fail mid-session ("Temporary authentication failure").
    root = Path(tempfile.mkdtemp(prefix="ks-mail-"))
    try:
        server, stop = start(root / "mail")
    except Unavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"real mail servers unavailable: {exc}")
    yield server
    stop()
    shutil.rmtree(root, ignore_errors=True)
