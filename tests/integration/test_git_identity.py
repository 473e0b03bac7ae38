"""Issue 15: every commit the agent makes is its own and signed. Notes sync and the coding subagent share one
git layer and one identity; `keystone-agent configure` writes the identity and the allowed-signers file. Real
ssh-keygen keys, a real ssh-agent, `git verify-commit`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.notes_sync import git, make_home, make_remote
from tests.support.signing import SshAgent, make_key, verify_commit


@pytest.fixture
def keys(tmp_path):
    return make_key(tmp_path / "keys", "agent"), make_key(tmp_path / "keys", "stranger")


@pytest.fixture
def ssh_agent(tmp_path, keys, monkeypatch):
    agent = SshAgent(tmp_path, keys[0])
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
    yield agent
    agent.stop()


def set_config(home: Path, **values) -> None:
    path = home / ".config/keystone-agent/config.json"
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data, indent=2))


def test_configure_writes_the_identity_and_the_allowed_signers(run_agent, tmp_path, keys):
    home = tmp_path / "home"
    result = run_agent("init", str(home), "--name", "drago", "--full-name", "Drago", "--email", "drago@example.com")
    assert result.exit_code == 0, result.output
    assert git("config", "--file", str(home / ".config/git/config"), "user.email") == "drago@example.com"
    assert git("config", "--file", str(home / ".config/git/config"), "commit.gpgsign") == "false"
    set_config(home, git={"signingKey": keys[0].public})
    (home / ".config/git/config").write_text((home / ".config/git/config").read_text() + "[alias]\n\tst = status\n")
    result = run_agent("configure", "--home", str(home), "--json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    config_file = home / ".config/git/config"
    assert git("config", "--file", str(config_file), "user.signingkey") == f"key::{keys[0].public}"
    assert git("config", "--file", str(config_file), "gpg.format") == "ssh"
    assert git("config", "--file", str(config_file), "alias.st") == "status"  # other settings are kept
    signers = Path(done["allowed_signers"])
    assert signers.read_text() == f'drago@example.com namespaces="git" {" ".join(keys[0].public.split()[:2])}\n'
    assert done["mcp_json"] == str(home / "notes/.mcp.json")


def test_a_notes_sync_commit_is_signed_by_the_agent(run_agent, tmp_path, keys, ssh_agent):
    bare = make_remote(tmp_path)
    home = make_home(tmp_path, "a", str(bare))
    set_config(home, git={"signingKey": keys[0].public})
    assert run_agent("configure", "--home", str(home)).exit_code == 0
    assert run_agent("sync", "--home", str(home)).exit_code == 0  # the clone
    (home / "notes" / "SOUL.md").write_text("# Demo\n")
    result = run_agent("sync", "--home", str(home), "--json")
    assert result.exit_code == 0, result.output
    notes = home / "notes"
    head = git("rev-parse", "HEAD", cwd=notes)
    assert git("log", "-1", "--format=%an <%ae>", cwd=notes) == "Demo Agent <demo@example.com>"
    good = verify_commit(notes, head, home / ".config/git/allowed_signers")
    assert good.returncode == 0, good.stderr
    assert 'Good "git" signature for demo@example.com' in good.stderr
    # the same check fails against a stranger's key: the signature is really the agent's
    stranger = tmp_path / "stranger_signers"
    stranger.write_text(f'demo@example.com namespaces="git" {keys[1].public}\n')
    assert verify_commit(notes, head, stranger).returncode != 0


def test_a_signing_key_that_is_not_loaded_fails_the_sync_clearly(run_agent, tmp_path, keys, monkeypatch):
    bare = make_remote(tmp_path)
    home = make_home(tmp_path, "a", str(bare))
    set_config(home, git={"signingKey": keys[0].public})
    assert run_agent("sync", "--home", str(home)).exit_code == 0
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent.sock"))
    (home / "notes" / "SOUL.md").write_text("# Demo\n")
    result = run_agent("sync", "--home", str(home))
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert git("status", "--porcelain", cwd=home / "notes")  # nothing lost: the change is still there


def test_configure_renders_the_agent_spaces_mcp_json_without_secrets(run_agent, tmp_path):
    home = tmp_path / "home"
    assert run_agent("init", str(home), "--name", "drago").exit_code == 0
    assert json.loads((home / "notes/.mcp.json").read_text()) == {"mcpServers": {}}
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    set_config(home, mcpServers={
        "forge": {"command": "forge-mcp", "args": ["--stdio"], "env": {"LOG_LEVEL": "info"},
                  "envFiles": {"FORGE_TOKEN": str(secret)}}})
    result = run_agent("configure", "--home", str(home))
    assert result.exit_code == 0, result.output
    text = (home / "notes/.mcp.json").read_text()
    assert json.loads(text) == {"mcpServers": {"forge": {
        "type": "stdio", "command": "forge-mcp", "args": ["--stdio"],
        "env": {"LOG_LEVEL": "info", "FORGE_TOKEN": "${FORGE_TOKEN}"}}}}
    assert "s3cret" not in text


def test_a_commit_the_provider_makes_in_the_agent_space_is_the_agents_and_signed(tmp_path, keys, clean_env):
    from tests.support.loop import make_home

    lh = make_home(tmp_path)
    notes = lh.home / "notes"
    git("init", "-q", "-b", "main", str(notes))
    lh.config(fullName="Demo Agent", email="demo@example.com", git={"signingKey": str(keys[0].private)})
    assert lh.agent("configure").returncode == 0
    lh.write_tasks("""
        tasks:
          - name: write-it
            description: "Write it down [fake:commit]"
            status: pending
    """)
    result = lh.loop()
    assert result.returncode == 0, result.stderr
    head = git("rev-parse", "HEAD", cwd=notes)
    assert git("log", "-1", "--format=%an <%ae> %s", cwd=notes) == "Demo Agent <demo@example.com> Work by the agent"
    checked = verify_commit(notes, head, lh.home / ".config/git/allowed_signers")
    assert checked.returncode == 0, checked.stderr
    assert 'Good "git" signature for demo@example.com' in checked.stderr
