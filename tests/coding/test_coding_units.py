"""The coding subagent's parts on their own: review parsing, names, URLs, the credential helper, provider
argv and timeouts, the Forgejo adapter's error handling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.coding.conftest import FORGEJO_TOKEN, make_upstream  # type: ignore[import-not-found]
from keystone_agents.coding import credential
from keystone_agents.coding.forge import ForgeError, choose_forge, clone_url, pr_title
from keystone_agents.coding.forge_forgejo import ForgejoForge
from keystone_agents.coding.providers import build_argv, provider_env, run_provider
from keystone_agents.coding.repo import RepoError, RepoId, branch_name, slugify, url_host
from keystone_agents.coding.review import ReviewComment, parse_review
from keystone_agents.config import parse_config


# --- review parsing ----------------------------------------------------------------------------------
def test_review_blocks_and_verdict():
    review = parse_review(
        "Summary first.\n\nCOMMENT: src/app.py:12\nOff by one.\nUse range(n).\nEND_COMMENT\n\nVERDICT: FAIL\n"
    )
    assert review.verdict == "FAIL" and review.explicit
    assert review.comments == [ReviewComment("src/app.py", 12, "Off by one.\nUse range(n).")]


def test_review_tolerates_decoration_and_missing_end():
    text = """```
**COMMENT:** `lib/x.rs:40-44` - unchecked unwrap
panics on empty input
- COMMENT: docs/guide.md
wording
END_COMMENT
COMMENT: general: add a changelog entry
```
**VERDICT: pass**
"""
    review = parse_review(text)
    assert review.verdict == "PASS"
    assert review.comments == [
        ReviewComment("lib/x.rs", 40, "unchecked unwrap\npanics on empty input"),
        ReviewComment("docs/guide.md", None, "wording"),
        ReviewComment(None, None, "general: add a changelog entry"),
    ]


def test_last_verdict_wins_and_none_is_fail():
    assert parse_review("Format: VERDICT: PASS or FAIL\nVERDICT: PASS\n...\nVERDICT: FAIL").verdict == "FAIL"
    assert parse_review("The answer is VERDICT: PASS inline").explicit is False  # not a line of its own
    review = parse_review("I could not decide.")
    assert review.verdict == "FAIL" and not review.explicit and not review.passed


# --- names and URLs ----------------------------------------------------------------------------------
def test_slug_and_branch_length():
    assert slugify("  Fix: the Login -- page!! ") == "fix-the-login-page"
    assert slugify("***") == "task"
    name = branch_name("refactor", "Rewrite the whole configuration loader so that it validates everything")
    assert name.startswith("refactor/rewrite-the-whole") and len(name) <= 40 and not name.endswith("-")


@pytest.mark.parametrize("good,owner,name", [("acme/widget", "acme", "widget"), ("a.b/c_d-e", "a.b", "c_d-e"),
                                             ("acme/widget.git", "acme", "widget")])
def test_repo_ids(good, owner, name):
    repo = RepoId.parse(good)
    assert (repo.owner, repo.name) == (owner, name)


@pytest.mark.parametrize("bad", ["acme", "a/b/c", "../x", "x/..", "-o/x", "x/-x", "x/.hidden", "x/a..b", "/x", "x/",
                                 "x y/z", "x/z\n", "x/" + "a" * 101])
def test_repo_ids_refused(bad):
    with pytest.raises(RepoError):
        RepoId.parse(bad)


def test_url_host():
    assert url_host("https://github.com/a/b.git") == "github.com"
    assert url_host("ssh://forgejo@git.example.com:2222/a/b.git") == "git.example.com"
    assert url_host("git@github.com:a/b.git") == "github.com"
    assert url_host("/srv/git/a/b.git") is None


def test_clone_urls_and_forge_choice():
    config = parse_config({"agentName": "demo", "forgejo": {"url": "https://git.example.com", "sshPort": 2222}})
    repo = RepoId("team", "tool")
    assert choose_forge(config, None, None) == "forgejo"  # only Forgejo configured
    assert clone_url(config, "forgejo", repo) == "ssh://forgejo@git.example.com:2222/team/tool.git"
    assert clone_url(config, "github", repo) == "https://github.com/team/tool.git"
    assert choose_forge(config, None, "git@github.com:team/tool.git") == "github"  # an existing clone decides
    assert choose_forge(config, None, "ssh://forgejo@git.example.com:2222/team/tool.git") == "forgejo"
    assert choose_forge(config, "github", None) == "github"
    both = parse_config({"agentName": "demo", "github": {"username": "u"}, "forgejo": {"url": "https://g.example"},
                         "coding": {"cloneUrl": "file:///srv/{owner}/{repo}.git"}})
    assert choose_forge(both, None, None) == "github"
    assert clone_url(both, "forgejo", repo) == "file:///srv/team/tool.git"
    none = parse_config({"agentName": "demo"})
    with pytest.raises(ForgeError, match="no `forgejo` section"):
        clone_url(none, "forgejo", repo)


def test_pr_title():
    assert pr_title("Fix it\n\nlong details") == "Fix it"
    assert len(pr_title("x" * 200)) == 70


# --- credential helper -------------------------------------------------------------------------------
def test_credential_helper_answers_only_for_its_host(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("tok-123456\n")
    env = {**os.environ, credential.TOKEN_FILE_ENV: str(token_file), credential.TOKEN_HOST_ENV: "github.com",
           "GIT_TERMINAL_PROMPT": "0"}
    helper = ["-c", "credential.helper=", "-c", f"credential.helper={credential.helper_config_value()}"]

    def fill(host):
        return subprocess.run(["git", *helper, "credential", "fill"], input=f"protocol=https\nhost={host}\n\n",
                              capture_output=True, text=True, env=env, cwd=tmp_path)

    answer = fill("github.com")
    assert answer.returncode == 0 and "username=x-access-token" in answer.stdout and "password=tok-123456" in answer.stdout
    assert fill("evil.example.com").returncode != 0  # no credentials, no prompt → git gives up
    assert credential.answer("store", {"host": "github.com"}, env) == ""


# --- providers ---------------------------------------------------------------------------------------
def test_provider_argv():
    assert build_argv("claude", "SYS", "TASK", "opus") == [
        "claude", "--print", "--dangerously-skip-permissions", "--append-system-prompt=SYS", "--model=opus", "--",
        "TASK"]
    assert build_argv("codex", "SYS", "TASK", None)[:3] == ["codex", "exec", "--full-auto"]
    assert build_argv("codex", "SYS", "TASK", "o3")[3:5] == ["--model=o3", "--"]
    gemini = build_argv("gemini", "SYS", "TASK", "flash")
    assert gemini[0] == "gemini" and gemini[1].startswith("--prompt=") and "SYS" in gemini[1] and "TASK" in gemini[1]
    assert gemini[2:] == ["--yolo", "--model=flash"]


def test_long_instructions_go_to_stdin():
    from keystone_agents.coding.providers import build_invocation

    task = "x" * 300_000
    claude, claude_in = build_invocation("claude", "SYS " + task, "TASK", "opus")
    assert claude == ["claude", "--print", "--dangerously-skip-permissions", "--model=opus"] and task in claude_in
    codex, codex_in = build_invocation("codex", "SYS " + task, "TASK")
    assert codex[-1] == "-" and task in codex_in
    gemini, gemini_in = build_invocation("gemini", "SYS " + task, "TASK")
    assert max(map(len, gemini)) < 1000 and task in gemini_in


def test_provider_env_drops_forge_tokens():
    env = provider_env({"EXTRA": "1"}, base={"GH_TOKEN": "x", "GITHUB_TOKEN": "y", "CLAUDECODE": "1", "PATH": "/bin"})
    assert env == {"PATH": "/bin", "EXTRA": "1"}


def test_timeout_kills_the_process_group(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    script = fake / "claude"
    script.write_text(
        f"#!{sys.executable}\nimport subprocess, time\n"
        f"child = subprocess.Popen(['sleep', '300'])\nopen({str(tmp_path / 'pid')!r}, 'w').write(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    started = time.monotonic()
    result = run_provider("claude", repo_dir=tmp_path, system_prompt="s", task_prompt="t", model=None, timeout=1)
    assert result.timed_out and result.exit_code is None and not result.ok
    assert time.monotonic() - started < 10
    child = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, "child of the timed-out provider still running"
        time.sleep(0.05)


# --- Forgejo adapter against the API stand-in --------------------------------------------------------
def test_forgejo_adapter_errors_name_the_call_not_the_token(forgejo_server, tmp_path):
    make_upstream(forgejo_server.repos_root, "team", "tool")
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-abcdef\n")
    forge = ForgejoForge(forgejo_server.url, str(wrong))
    with pytest.raises(ForgeError) as denied:
        forge.get_pull(RepoId("team", "tool"), 1)
    assert "HTTP 401: token is required" in str(denied.value) and "not-the-token" not in str(denied.value)

    good = tmp_path / "token"
    good.write_text(FORGEJO_TOKEN)
    forge = ForgejoForge(forgejo_server.url + "/", str(good))
    with pytest.raises(ForgeError, match="HTTP 404"):
        forge.get_pull(RepoId("team", "missing"), 1)
    with pytest.raises(ForgeError, match="HTTP 404: branch nope does not exist"):
        forge.create_draft(RepoId("team", "tool"), head="nope", base="main", title="t", body="b")
    pr = forge.create_draft(RepoId("team", "tool"), head="main", base="main", title="WIP: Title", body="b")
    assert pr.number == 1 and pr.url.endswith("/team/tool/pulls/1")
    assert forgejo_server.pulls[("team", "tool")][1]["title"] == "WIP: Title"  # no double prefix
    with pytest.raises(ForgeError, match="HTTP 409"):
        forge.create_draft(RepoId("team", "tool"), head="main", base="main", title="Again", body="b")
    forge.mark_ready(RepoId("team", "tool"), pr)
    assert forgejo_server.pulls[("team", "tool")][1]["title"] == "Title"
    forge.mark_ready(RepoId("team", "tool"), pr)  # already ready: no second PATCH
    assert [m for m, _, _ in forgejo_server.requests].count("PATCH") == 1


def test_forgejo_unreachable(tmp_path):
    forge = ForgejoForge("http://127.0.0.1:9", None)
    with pytest.raises(ForgeError, match="cannot connect"):
        forge.get_pull(RepoId("a", "b"), 1)
