"""`keystone-agent init` leads somewhere: next steps, --notes-repo (a clone, or a fresh repo pushed to an empty
remote) so that `sync` works right away, and clear refusals before anything is written."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import FAKEBIN, installed_script


def agent(*args, env=None, cwd=None):
    return subprocess.run([installed_script("keystone-agent"), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


@pytest.fixture
def env(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KEYSTONE_AGENT", "GIT_"))}
    # the default provider's CLI is "installed" (the stand-in): validate checks that it can run
    return {**base, "HOME": str(tmp_path / "operator"), "PATH": f"{FAKEBIN}{os.pathsep}{base.get('PATH', '')}"}


def git(*args, cwd=None):
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd, check=True).stdout


def test_init_ends_with_next_steps(tmp_path, env):
    home = tmp_path / "drago"
    result = agent("init", str(home), "--name", "drago", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Next steps:" in out
    assert f"keystone-agent validate --home {home}" in out
    assert f"keystone-agent loop --dry-run --home {home}" in out
    assert '"notes": {"repo": "<git URL>"}' in out and "keystone-agent sync" in out
    # the steps it names work
    assert agent("validate", "--home", str(home), env=env).returncode == 0
    dry = agent("loop", "--dry-run", "--home", str(home), env=env)
    assert dry.returncode == 0, dry.stderr
    steps = json.loads(agent("init", str(tmp_path / "other"), "--name", "other", "--json", env=env).stdout)
    assert len(steps["next_steps"]) == 4 and steps["notes"] is None


def test_invalid_name_is_refused_before_writing_anything(tmp_path, env):
    home = tmp_path / "bad"
    result = agent("init", str(home), "--name", "Bad Name!", env=env)
    assert result.returncode == 2 and "is not an agent name" in result.stderr
    assert not home.exists()


def test_unwritable_path_is_one_clear_line(tmp_path, env):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    result = agent("init", str(blocker / "home"), "--name", "drago", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write the agent home {blocker / 'home'}: ")
    assert "Traceback" not in result.stderr


def test_notes_repo_empty_remote_gets_a_fresh_repo_and_sync_works(tmp_path, env):
    remote = tmp_path / "notes.git"
    git("init", "--quiet", "--bare", str(remote))
    home = tmp_path / "drago"
    result = agent("init", str(home), "--name", "drago", "--notes-repo", str(remote), env=env)
    assert result.returncode == 0, result.stderr
    assert "new repository pushed to" in result.stdout
    config = json.loads((home / ".config/keystone-agent/config.json").read_text())
    assert config["notes"]["repo"] == str(remote)
    assert "SOUL.md" in git("ls-tree", "--name-only", "main", cwd=remote)
    (home / "notes/new-note.md").write_text("hello\n")
    sync = agent("sync", "--home", str(home), "--json", env=env)
    assert sync.returncode == 0, sync.stderr
    record = json.loads(sync.stdout)
    assert record["committed"] and record["pushed"]
    assert "new-note.md" in git("ls-tree", "--name-only", "main", cwd=remote)


def test_notes_repo_with_history_is_cloned_keeping_its_files(tmp_path, env):
    remote = tmp_path / "notes.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    seed = tmp_path / "seed"
    git("clone", "--quiet", str(remote), str(seed))
    (seed / "SOUL.md").write_text("# The remote's own soul\n")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(seed), "add", "SOUL.md")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(seed), "commit", "--quiet", "-m", "soul")
    git("-C", str(seed), "push", "--quiet", "origin", "HEAD:main")
    home = tmp_path / "drago"
    result = agent("init", str(home), "--name", "drago", "--notes-repo", str(remote), env=env)
    assert result.returncode == 0, result.stderr
    assert "is a clone of" in result.stdout
    assert (home / "notes/SOUL.md").read_text() == "# The remote's own soul\n"  # the remote's file wins
    assert (home / "notes/TEAM.md").exists()  # scaffolded files it lacked are added
    sync = agent("sync", "--home", str(home), "--json", env=env)
    assert sync.returncode == 0, sync.stderr
    assert "TEAM.md" in git("ls-tree", "--name-only", "main", cwd=remote)


def test_unreachable_notes_repo_writes_nothing(tmp_path, env):
    home = tmp_path / "drago"
    result = agent("init", str(home), "--name", "drago", "--notes-repo", str(tmp_path / "missing.git"), env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read the notes repo ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not home.exists()
