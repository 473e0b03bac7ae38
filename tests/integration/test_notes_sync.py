"""Notes sync edge cases against local bare repositories (a real git remote reached by path; the SSH
transport itself is covered by test_notes_sync_ssh.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from keystone_agents import queuefile
from keystone_agents.config import parse_config
from keystone_agents.lock import try_lock
from keystone_agents.git import Git, GitError, explain, redact
from keystone_agents.git_identity import git_environment, git_settings, ssh_command
from keystone_agents.space import AgentSpace
from tests.support.notes_sync import (
    COMMIT_MESSAGE,
    git,
    last_record,
    make_home,
    make_remote,
    metrics,
    records,
    remote_branches,
    remote_head,
    remote_show,
)


def sync(run_agent, home: Path, *args: str):
    return run_agent("sync", "--home", str(home), "--json", *args)


def test_overlapping_run_skips_and_leaves_metrics_untouched(run_agent, tmp_path):
    home = make_home(tmp_path, "a", str(make_remote(tmp_path)))
    space = AgentSpace.from_home(home)
    with try_lock(space.notes_sync_lock_file) as held:
        assert held
        result = sync(run_agent, home)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"skipped": True, "exit_code": 0}
    assert 'event="run_skipped"' in result.stderr
    assert not (home / "notes").exists()
    assert not (home / "metrics").exists() and records(home) == []


def test_lock_of_a_dead_process_does_not_block(run_agent, tmp_path):
    home = make_home(tmp_path, "a", str(make_remote(tmp_path)))
    lock = AgentSpace.from_home(home).notes_sync_lock_file
    lock.parent.mkdir(parents=True, exist_ok=True)
    code = f"import fcntl,os; fd=os.open({str(lock)!r}, os.O_RDWR|os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True)  # took the lock and died holding it
    assert sync(run_agent, home).exit_code == 0
    assert (home / "notes" / "TODO.md").exists()


def test_missing_repo_setting_is_a_clear_error(run_agent, tmp_path):
    home = make_home(tmp_path, "a", None)
    result = run_agent("sync", "--home", str(home))
    assert result.exit_code == 1
    assert "notes.repo is not set" in result.stderr and "config.json" in result.stderr
    assert metrics(home)["keystone_agent_notes_sync_last_exit_code"] == 1
    assert metrics(home)["keystone_agent_notes_sync_last_success_timestamp_seconds"] == 0


def test_existing_directory_that_is_not_a_repo_is_left_alone(run_agent, tmp_path):
    home = make_home(tmp_path, "a", str(make_remote(tmp_path)))
    (home / "notes").mkdir()
    (home / "notes" / "mine.md").write_text("precious\n")
    result = run_agent("sync", "--home", str(home))
    assert result.exit_code == 1
    assert "is not the top of a git repository" in result.stderr
    assert sorted(p.name for p in (home / "notes").iterdir()) == ["mine.md"]


def test_empty_remote_gets_the_first_commit_and_an_upstream(run_agent, tmp_path):
    bare = make_remote(tmp_path, seed=False)
    home = make_home(tmp_path, "a", str(bare), commitPrefix="notes")
    assert sync(run_agent, home).exit_code == 0
    result = sync(run_agent, home)  # nothing written yet: nothing to do, nothing pushed
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "nothing_to_do"
    assert remote_head(bare) is None
    notes = home / "notes"
    (notes / "SOUL.md").write_text("# Demo\n")
    record = json.loads(sync(run_agent, home).stdout)
    assert record["committed"] and record["pushed"]
    branch = record["branch"]
    assert COMMIT_MESSAGE.match(git("--git-dir", str(bare), "log", "-1", "--format=%s", branch))["prefix"] == "notes"
    assert git("rev-parse", "--abbrev-ref", "@{upstream}", cwd=notes) == f"origin/{branch}"


def test_conflict_branch_kept_locally_when_its_push_fails_then_pushed_later(run_agent, tmp_path):
    bare = make_remote(tmp_path)
    # the remote refuses conflict branches for now (a real hook: the push really fails)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(textwrap.dedent("""\
        #!/bin/sh
        while read old new ref; do
          case "$ref" in refs/heads/conflict/*) echo "conflict branches refused" >&2; exit 1;; esac
        done
        """))
    hook.chmod(0o755)
    home_a = make_home(tmp_path, "a", str(bare))
    home_b = make_home(tmp_path, "b", str(bare))
    for home in (home_a, home_b):
        assert sync(run_agent, home).exit_code == 0
    (home_a / "notes" / "TODO.md").write_text("A\n")
    (home_b / "notes" / "TODO.md").write_text("B\n")
    assert sync(run_agent, home_a).exit_code == 0

    result = sync(run_agent, home_b)
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    branch = record["conflict_branch"]
    notes_b = home_b / "notes"
    assert git("show", f"{branch}:TODO.md", cwd=notes_b) == "B"  # kept locally
    assert remote_branches(bare) == ["main"]
    marker = AgentSpace.from_home(home_b).conflict_marker
    assert "remote_pushed=false" in marker.read_text()
    [entry] = [e for e in queuefile.load(home_b / "ISSUES.yaml", queuefile.ISSUES).valid_entries()
               if e["name"].startswith("notes-sync-conflict-")]
    assert "kept ONLY LOCALLY" in entry["description"]

    hook.unlink()  # the remote accepts it again: the next (still pending) run backs the work up
    result = sync(run_agent, home_b)
    assert result.exit_code == 1 and json.loads(result.stdout)["status"] == "conflict_pending"
    assert remote_show(bare, f"{branch}:TODO.md") == "B"
    assert "remote_pushed=true" in marker.read_text()
    assert remote_show(bare, "main:TODO.md") == "A"


def test_rebase_left_by_a_killed_run_is_aborted_without_losing_work(run_agent, tmp_path):
    bare = make_remote(tmp_path)
    home_a = make_home(tmp_path, "a", str(bare))
    home_b = make_home(tmp_path, "b", str(bare))
    for home in (home_a, home_b):
        assert sync(run_agent, home).exit_code == 0
    (home_a / "notes" / "other.md").write_text("from A\n")
    assert sync(run_agent, home_a).exit_code == 0
    notes_b = home_b / "notes"
    (notes_b / "TODO.md").write_text("B's version\n")
    git("-c", "user.name=B", "-c", "user.email=b@example.com", "commit", "-qam", "B work", cwd=notes_b)
    git("fetch", "-q", cwd=notes_b)
    # a rebase that stops (an `edit` step) and is never finished, as if the run had been killed
    env = {"GIT_SEQUENCE_EDITOR": "sed -i s/^pick/edit/"}
    git("-c", "user.name=B", "-c", "user.email=b@example.com", "rebase", "-i", "origin/main", cwd=notes_b, env=env)
    assert (notes_b / ".git" / "rebase-merge").exists()

    result = sync(run_agent, home_b)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert "aborted an unfinished rebase left by an interrupted run" in record["messages"]
    assert record["rebased"] and record["pushed"]
    assert remote_show(bare, "main:TODO.md") == "B's version"
    assert remote_show(bare, "main:other.md") == "from A"


def test_only_the_newest_records_are_kept(run_agent, tmp_path):
    home = make_home(tmp_path, "a", str(make_remote(tmp_path)), keepRecords=2)
    for index in range(4):
        (tmp_path / "marker").write_text(str(index))
        assert sync(run_agent, home).exit_code == 0
    directory = AgentSpace.from_home(home).notes_sync_logs_dir
    assert len(list(directory.glob("*.json"))) == 2 and len(list(directory.glob("*.log"))) == 2
    kept = records(home)
    assert [r["status"] for r in kept] == ["nothing_to_do", "nothing_to_do"]
    assert kept[0]["timestamp"] <= kept[1]["timestamp"] and kept[0]["run_id"] != kept[1]["run_id"]
    assert last_record(home)["cloned"] is False  # the clone record (run 1) was pruned


def test_identity_and_signing_settings_come_from_the_config():
    config = parse_config(
        {"agentName": "drago", "fullName": "Drago", "email": "drago@example.com",
         "notes": {"signingKey": "ssh-ed25519 AAAAC3Nza drago"}}
    )
    settings = dict(git_settings(config))
    assert settings["user.name"] == "Drago" and settings["user.email"] == "drago@example.com"
    assert settings["gpg.format"] == "ssh" and settings["commit.gpgsign"] == "true"
    assert settings["user.signingkey"] == "key::ssh-ed25519 AAAAC3Nza drago"
    unsigned = dict(git_settings(parse_config({"agentName": "drago"})))
    assert unsigned["commit.gpgsign"] == "false" and "gpg.format" not in unsigned


def test_environment_uses_the_agent_socket_and_accept_new(tmp_path):
    config = parse_config({"agentName": "drago", "email": "d@example.com"})
    env = git_environment(config, tmp_path / "home with space", {"SSH_AUTH_SOCK": "/run/x/agent.sock", "PATH": "/usr/bin"})
    assert env["SSH_AUTH_SOCK"] == "/run/x/agent.sock"
    assert "-o StrictHostKeyChecking=accept-new" in env["GIT_SSH_COMMAND"]
    # git hands GIT_SSH_COMMAND to `sh -c`: the path with a space must arrive as one word
    assert "'UserKnownHostsFile=" in env["GIT_SSH_COMMAND"]
    keys = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert keys["user.email"] == "d@example.com"
    # a real git sees the settings
    repo = tmp_path / "r"
    git("init", "-q", str(repo))
    assert Git(repo, env).config_get("user.email") == "d@example.com"
    assert ssh_command(tmp_path).startswith("ssh ")


def test_secrets_in_urls_are_masked():
    assert redact("cannot reach https://bot:s3cr3t@git.example.com/x.git") == (
        "cannot reach https://bot:***@git.example.com/x.git"
    )
    error = GitError(("clone", "https://bot:s3cr3t@h/x.git"), 128,
                     "fatal: unable to access 'https://bot:s3cr3t@h/x.git/': Could not resolve host: h\n")
    assert "s3cr3t" not in str(error) and "Could not resolve host: h" in error.detail
    assert explain("ssh: connect to host h port 22: Connection refused\nfatal: Could not read from remote repository.\n\n"
                   "Please make sure you have the correct access rights\nand the repository exists.\n") == (
        "ssh: connect to host h port 22: Connection refused"
    )


def test_https_password_never_reaches_records_or_metrics(run_agent, tmp_path):
    home = make_home(tmp_path, "a", "https://bot:s3cr3t@127.0.0.1:9/notes.git")
    result = run_agent("sync", "--home", str(home))
    assert result.exit_code == 1
    assert "cannot clone the notes repo https://127.0.0.1:9/notes.git" in result.stderr
    state = home / ".local" / "state"
    leaked = [p for p in [*state.rglob("*"), *(home / "metrics").rglob("*")] if p.is_file() and b"s3cr3t" in p.read_bytes()]
    assert leaked == [] and "s3cr3t" not in result.output


def test_installed_script_exit_codes(agent_subprocess, tmp_path):
    bare = make_remote(tmp_path)
    home = make_home(tmp_path, "a", str(bare))
    first = agent_subprocess("sync", "--home", str(home))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("cloned ") and 'event="run_finish"' in first.stderr
    (home / "notes" / "new.md").write_text("new\n")
    second = agent_subprocess("sync", "--home", str(home), "--json")
    assert second.returncode == 0 and json.loads(second.stdout)["pushed"] is True
    assert remote_show(bare, "main:new.md") == "new"
    broken = make_home(tmp_path, "b", None)
    assert agent_subprocess("sync", "--home", str(broken)).returncode == 1


def test_unwritable_metrics_dir_does_not_hide_the_sync(run_agent, tmp_path):
    bare = make_remote(tmp_path)
    home = make_home(tmp_path, "a", str(bare))
    config_file = home / ".config" / "keystone-agent" / "config.json"
    config = json.loads(config_file.read_text())
    (home / "not-a-dir").write_text("")
    config["textfileDir"] = str(home / "not-a-dir" / "metrics")
    config_file.write_text(json.dumps(config))
    result = sync(run_agent, home)
    assert result.exit_code == 0
    assert 'event="sync_report_failed"' in result.stderr and 'step="metrics"' in result.stderr
    assert last_record(home)["cloned"] is True
