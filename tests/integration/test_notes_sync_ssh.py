"""Notes sync against a bare repository served by a real OpenSSH server on 127.0.0.1, authenticating with a key
that only a real ssh-agent holds (the private key file is deleted once the agent has it)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from keystone_agents import history, queuefile
from tests.support.notes_sync import (
    COMMIT_MESSAGE,
    git,
    human_clone,
    human_commit,
    last_record,
    make_home,
    make_remote,
    metrics,
    remote_branches,
    remote_head,
    remote_show,
    run_logs,
)
from tests.support.sshd import SshAgent, SshServer, sshd_unavailable_reason

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ssh_setup(tmp_path_factory):
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("sshd")
    server = SshServer(root)
    server.start()
    agent = SshAgent(root)
    agent.add(server.client_key)
    server.client_key.unlink()  # from here on only the ssh-agent can authenticate (and sign)
    yield server, agent
    server.stop()
    agent.stop()


@pytest.fixture
def ssh(ssh_setup, monkeypatch, clean_env):
    server, agent = ssh_setup
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    if server.process is None:  # a test that stopped it failed before restarting
        server.start()
    return server


def sync(run_agent, home: Path, *args: str):
    return run_agent("sync", "--home", str(home), "--json", *args)


def test_first_run_clones_then_nothing_to_do(ssh, run_agent, tmp_path):
    bare = make_remote(tmp_path)
    url = ssh.url(bare)
    home = make_home(tmp_path, "a", url)

    result = sync(run_agent, home)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["cloned"] is True and record["status"] == "cloned" and record["branch"] == "main"
    notes = home / "notes"
    assert (notes / "TODO.md").read_text() == "line one\nshared line\nline three\n"
    assert git("remote", "get-url", "origin", cwd=notes) == url
    # accept-new stored the server's host key in the agent's own known_hosts
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[127.0.0.1]:{ssh.port}", "-f", str(home / ".ssh" / "known_hosts")],
        capture_output=True, text=True,
    )
    host_key = Path(f"{ssh.host_key}.pub").read_text().split()[1]
    assert found.returncode == 0 and host_key in found.stdout

    before = remote_head(bare)
    result = sync(run_agent, home)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["committed"], record["rebased"], record["pushed"]) == (False, False, False)
    assert record["status"] == "nothing_to_do"
    assert remote_head(bare) == before == git("rev-parse", "HEAD", cwd=notes)
    assert git("log", "--format=%s", cwd=notes) == "seed"


def test_commit_and_push(ssh, run_agent, tmp_path):
    bare = make_remote(tmp_path)
    home = make_home(tmp_path, "a", ssh.url(bare))
    assert sync(run_agent, home).exit_code == 0
    notes = home / "notes"
    (notes / "TODO.md").write_text("line one\nshared line\nline three\nline four\n")
    (notes / "inbox").mkdir()
    (notes / "inbox" / "idea.md").write_text("an idea\n")

    result = sync(run_agent, home)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["committed"] is True and record["pushed"] is True and record["rebased"] is False
    assert record["conflict"] is False and record["exit_code"] == 0 and record["branch"] == "main"
    assert record["commit"] == remote_head(bare)

    subject = git("--git-dir", str(bare), "log", "-1", "--format=%s", "main")
    match = COMMIT_MESSAGE.match(subject)
    assert match and match["prefix"] == "vault sync", subject
    assert git("--git-dir", str(bare), "log", "-1", "--format=%an <%ae>", "main") == "Demo Agent <demo@example.com>"
    assert remote_show(bare, "main:inbox/idea.md") == "an idea"
    assert remote_show(bare, "main:TODO.md").endswith("line four")

    # the record on disk is the one printed, with real JSON booleans
    on_disk = last_record(home)
    assert on_disk["pushed"] is True and on_disk["timestamp"] == record["timestamp"]
    values = metrics(home)
    assert values["keystone_agent_notes_sync_last_exit_code"] == 0
    assert values["keystone_agent_notes_sync_conflict_pending"] == 0
    assert values["keystone_agent_notes_sync_last_success_timestamp_seconds"] >= values[
        "keystone_agent_notes_sync_last_run_timestamp_seconds"
    ] > 0
    runs = history.recent_runs(home / ".local/state/agent-task-loop/state/history.sqlite3", kind="notes-sync")
    assert runs[0]["pushed"] is True and runs[0]["exit_code"] == 0 and runs[0]["status"] == "success"
    logs = run_logs(home)
    for event in ("run_start", "sync_committed", "sync_pushed", "run_finish"):
        assert f'event="{event}"' in logs
    assert re.search(r'event="run_finish".*unit="agent-demo-notes-sync".*status="success"', logs)


def test_conflict_keeps_local_work_on_a_remote_branch(ssh, run_agent, tmp_path):
    bare = make_remote(tmp_path)
    url = ssh.url(bare)
    home_a = make_home(tmp_path, "a", url)
    home_b = make_home(tmp_path, "b", url, commitPrefix="notes b")
    assert sync(run_agent, home_a).exit_code == 0
    assert sync(run_agent, home_b).exit_code == 0
    (home_a / "notes" / "TODO.md").write_text("line one\nshared line EDITED BY A\nline three\n")
    (home_b / "notes" / "TODO.md").write_text("line one\nshared line EDITED BY B\nline three\n")
    assert sync(run_agent, home_a).exit_code == 0
    main_after_a = remote_head(bare)

    result = sync(run_agent, home_b)
    assert result.exit_code == 1, result.output
    record = json.loads(result.stdout)
    assert record["conflict"] is True and record["conflict_pending"] is True and record["pushed"] is False
    branch = record["conflict_branch"]
    assert re.fullmatch(r"conflict/host-b-\d{8}-\d{6}", branch)
    # the remote holds B's work on the conflict branch; main still has A's
    assert branch in remote_branches(bare)
    assert "EDITED BY B" in remote_show(bare, f"{branch}:TODO.md")
    assert COMMIT_MESSAGE.match(git("--git-dir", str(bare), "log", "-1", "--format=%s", branch))["prefix"] == "notes b"
    assert remote_head(bare) == main_after_a
    # locally: rebase aborted, B's commit still on main, nothing lost
    notes_b = home_b / "notes"
    assert "EDITED BY B" in (notes_b / "TODO.md").read_text()
    assert not (notes_b / ".git" / "rebase-merge").exists()
    assert git("rev-parse", "HEAD", cwd=notes_b) == git("rev-parse", branch, cwd=notes_b)
    # ISSUES.yaml says so, and stays schema-valid
    doc = queuefile.load(home_b / "ISSUES.yaml", queuefile.ISSUES)
    assert doc.problems == []
    entries = [e for e in doc.valid_entries() if e["name"].startswith("notes-sync-conflict-host-b-")]
    assert len(entries) == 1 and entries[0]["status"] == "open" and entries[0]["discovered_during"] == "notes-sync"
    assert branch in entries[0]["description"] and "TODO.md" in entries[0]["description"]
    assert "pushed to the remote" in entries[0]["description"]
    marker = home_b / ".local/state/agent-task-loop/state/conflict_pending"
    assert f"branch={branch}" in marker.read_text()
    assert metrics(home_b)["keystone_agent_notes_sync_conflict_pending"] == 1
    assert metrics(home_b)["keystone_agent_notes_sync_last_exit_code"] == 1

    # later runs commit locally, say the conflict is pending, and back up to the conflict branch only
    (notes_b / "later.md").write_text("written while the conflict waits\n")
    result = run_agent("sync", "--home", str(home_b))
    assert result.exit_code == 1
    assert "conflict is pending" in result.output
    assert git("log", "-1", "--format=%s", cwd=notes_b).startswith("notes b: ")
    assert remote_head(bare) == main_after_a
    assert remote_head(bare, branch) == git("rev-parse", "HEAD", cwd=notes_b)
    assert metrics(home_b)["keystone_agent_notes_sync_conflict_pending"] == 1

    # a human merges the conflict branch on the remote ...
    human = human_clone(bare, tmp_path / "human")
    git("fetch", "--quiet", "origin", cwd=human)
    git(*("-c", "user.name=Human", "-c", "user.email=h@example.com"), "merge", "--quiet", f"origin/{branch}",
        cwd=human, check=False)
    (human / "TODO.md").write_text("line one\nshared line EDITED BY A AND B\nline three\n")
    human_commit(human, "merge notes conflict")
    git("push", "--quiet", "origin", "main", cwd=human)

    # ... and clears the marker; the next sync brings main and B together (and pushes what B wrote since)
    (notes_b / "after.md").write_text("written after the merge\n")
    result = sync(run_agent, home_b, "--resolved")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["conflict_pending"] is False and not marker.exists()
    assert record["committed"] and record["rebased"] and record["pushed"]
    assert remote_show(bare, "main:after.md") == "written after the merge"
    assert remote_head(bare) == git("rev-parse", "HEAD", cwd=notes_b)
    assert remote_show(bare, "main:later.md") == "written while the conflict waits"
    assert "EDITED BY A AND B" in remote_show(bare, "main:TODO.md")
    resolved = [e for e in queuefile.load(home_b / "ISSUES.yaml", queuefile.ISSUES).valid_entries()
                if e["name"] == entries[0]["name"]]
    assert resolved[0]["status"] == "resolved"
    assert metrics(home_b)["keystone_agent_notes_sync_conflict_pending"] == 0


def test_unreachable_remote_keeps_the_commit_and_pushes_later(ssh, run_agent, tmp_path):
    bare = make_remote(tmp_path)
    home = make_home(tmp_path, "a", ssh.url(bare))
    assert sync(run_agent, home).exit_code == 0
    notes = home / "notes"
    before = remote_head(bare)

    ssh.stop()
    try:
        (notes / "offline.md").write_text("written while the server was down\n")
        result = run_agent("sync", "--home", str(home))
        assert result.exit_code == 1
        assert "cannot reach the notes remote" in result.output
        assert f"127.0.0.1 port {ssh.port}" in result.output and "Connection refused" in result.output
        record = last_record(home)
        assert record["committed"] is True and record["pushed"] is False and record["exit_code"] == 1
        assert COMMIT_MESSAGE.match(git("log", "-1", "--format=%s", cwd=notes))
        assert git("status", "--porcelain", cwd=notes) == ""
        assert remote_head(bare) == before
        assert metrics(home)["keystone_agent_notes_sync_last_exit_code"] == 1
    finally:
        ssh.start()

    result = sync(run_agent, home)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["committed"] is False and record["pushed"] is True
    assert remote_head(bare) == git("rev-parse", "HEAD", cwd=notes)
    assert remote_show(bare, "main:offline.md") == "written while the server was down"


def test_signed_commits_verify_with_allowed_signers(ssh, run_agent, tmp_path):
    bare = make_remote(tmp_path)
    home = make_home(tmp_path, "a", ssh.url(bare), signingKey=ssh.public_key)
    assert sync(run_agent, home).exit_code == 0
    notes = home / "notes"
    (notes / "signed.md").write_text("signed\n")
    # the remote moves on meanwhile, so the agent's commit is rebased (and must be re-signed) before the push
    human = human_clone(bare, tmp_path / "human")
    (human / "other.md").write_text("from the human\n")
    human_commit(human, "human change")
    git("push", "--quiet", "origin", "main", cwd=human)

    result = sync(run_agent, home)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["committed"] and record["rebased"] and record["pushed"]

    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'demo@example.com namespaces="git" {ssh.public_key}\n')
    verify = ["-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", "--raw", "main"]
    proc = subprocess.run(["git", "--git-dir", str(bare), *verify], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'Good "git" signature for demo@example.com' in proc.stderr

    # an allowed-signers file naming another key rejects it: the check above is real
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    allowed.write_text(f'demo@example.com namespaces="git" {Path(f"{other}.pub").read_text().strip()}\n')
    proc = subprocess.run(["git", "--git-dir", str(bare), *verify], capture_output=True, text=True)
    assert proc.returncode != 0
