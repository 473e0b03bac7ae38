"""Notes sync survives a race and keeps no secret at rest (issue 21): two clones pushing at the same instant
both land (fetch, rebase, push again with jittered retries; never "cannot reach"); a remote URL with a token
is stored without it, git gets the token from the credential helper."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from tests.conftest import installed_script
from tests.support.git_http import GitHttpServer
from tests.support.notes_sync import git, make_home, make_remote


def sync(home, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([installed_script("keystone-agent"), "sync", "--home", str(home)], capture_output=True,
                          text=True, timeout=120, env=env)


def test_two_clones_syncing_at_the_same_instant_both_land(tmp_path, clean_env):
    import os

    bare = make_remote(tmp_path)
    homes = [make_home(tmp_path, name, str(bare)) for name in ("a", "b")]
    for home in homes:
        assert sync(home).returncode == 0
    retries = 0
    for round_ in range(8):
        for home in homes:
            (home / "notes" / f"{home.name}-{round_}.md").write_text(f"{home.name} round {round_}\n")
        barrier = threading.Barrier(2)
        results: dict[str, subprocess.CompletedProcess] = {}

        def go(home):
            barrier.wait()
            results[home.name] = sync(home, dict(os.environ))

        threads = [threading.Thread(target=go, args=(home,)) for home in homes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, result in results.items():
            assert "cannot reach" not in result.stderr, (round_, name, result.stderr)
            assert result.returncode == 0, (round_, name, result.stderr)
            retries += result.stderr.count('event="sync_push_retry"')
    files = set(git("--git-dir", str(bare), "ls-tree", "--name-only", "main").splitlines())
    assert {f"{side}-{n}.md" for side in "ab" for n in range(8)} <= files
    assert retries > 0, "the clones never raced: the retry path was not exercised"


def test_a_credentialed_remote_url_leaves_no_token_in_git_config(tmp_path, clean_env):
    bare = make_remote(tmp_path)
    with GitHttpServer(bare.parent, "bot", "s3cr3t-token") as server:
        home = make_home(tmp_path, "a", server.url("notes.git", "bot:s3cr3t-token"))
        first = sync(home)
        assert first.returncode == 0, first.stderr
        git_config = (home / "notes/.git/config").read_text()
        assert "s3cr3t" not in git_config and server.url("notes.git") in git_config
        (home / "notes" / "new.md").write_text("from the agent\n")
        second = sync(home)
        assert second.returncode == 0, second.stderr
        assert git("--git-dir", str(bare), "show", "main:new.md") == "from the agent"
        assert "s3cr3t" not in (home / "notes/.git/config").read_text()
        assert "s3cr3t" not in first.stderr + second.stderr + first.stdout + second.stdout
        # nowhere in the home but the configuration the operator wrote
        leaked = [p for p in home.rglob("*") if p.is_file() and not p.is_symlink()
                  and b"s3cr3t" in p.read_bytes() and p.name != "config.json"]
        assert leaked == []
        assert server.auth_seen.count(server.expected) >= 2  # the helper answered for fetch and push


def test_a_token_file_and_an_old_clone_with_credentials_in_its_url(tmp_path, clean_env):
    bare = make_remote(tmp_path)
    token = tmp_path / "notes-token"
    token.write_text("file-token\n")
    with GitHttpServer(bare.parent, "bot", "file-token") as server:
        home = make_home(tmp_path, "a", server.url("notes.git", "bot"), tokenFile=str(token))
        # a clone made before this version: its .git/config still holds the token
        git("clone", "--quiet", server.url("notes.git", "bot:file-token"), str(home / "notes"))
        assert "file-token" in (home / "notes/.git/config").read_text()
        (home / "notes" / "x.md").write_text("x\n")
        result = sync(home)
        assert result.returncode == 0, result.stderr
        assert "file-token" not in (home / "notes/.git/config").read_text()
        assert 'event="sync_credentials_removed"' in result.stderr
        assert git("--git-dir", str(bare), "show", "main:x.md") == "x"
