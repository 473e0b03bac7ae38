"""`keystone-agent code` end to end: real git (a bare upstream served over smart HTTP with a token, or a
file:// remote), stand-in provider CLIs that commit / block / do nothing / hang, a stand-in gh, and the
Forgejo API stand-in."""

from __future__ import annotations

import json
import os
import shutil
import re
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.coding.conftest import FORGEJO_TOKEN, TOKEN, git, make_upstream  # type: ignore[import-not-found]
from keystone_agents.cli.agent import cli

TASK = "Add a greeting to the README"
PASS_WITH_COMMENTS = """I looked at the change.

COMMENT: README.md:2
The greeting could be friendlier.
END_COMMENT

**COMMENT:** general
Consider a changelog entry.
END_COMMENT

VERDICT: PASS
"""
FAIL_REVIEW = """COMMENT: README.md:2
Say hello to the world, not to nobody.
END_COMMENT
VERDICT: FAIL
"""


def code(env, *args, config=None):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["code", "--home", str(env.home), "--config", str(config), "--json", *args], catch_exceptions=False
    )
    try:
        data = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"no JSON on stdout: {result.stdout!r} / {result.stderr!r}") from None
    return result, data


def commit(files, message="Add greeting"):
    return {"do": "commit", "files": files, "message": message}


@pytest.fixture
def github(coding_env, git_http_server, request):
    """An upstream on the token-protected smart-HTTP server and a config pointing clones at it."""
    owner = "acme" + re.sub(r"[^a-z0-9]", "", request.node.name.lower())[4:24] + uuid.uuid4().hex[:6]
    upstream = make_upstream(git_http_server.root, owner, "widget")
    config = coding_env.write_config(cloneUrl=f"{git_http_server.url}/{{owner}}/{{repo}}.git")
    os.environ["FAKE_GH_UPSTREAM"] = str(upstream)
    yield {"repo": f"{owner}/widget", "upstream": upstream, "config": config, "server": git_http_server}
    os.environ.pop("FAKE_GH_UPSTREAM", None)


def clone_dir(env, repo):
    return env.home / "notes" / ".repos" / repo


def assert_back_on_main(env, repo):
    work = clone_dir(env, repo)
    assert git("symbolic-ref", "--short", "HEAD", cwd=work) == "main"
    assert git("status", "--porcelain", cwd=work) == ""


def test_pass_with_comments_marks_ready_and_posts_inline(coding_env, github):
    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": PASS_WITH_COMMENTS}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=github["config"])
    assert result.exit_code == 0, (data["message"], result.stderr[-3000:])
    assert data["outcome"] == "ready" and data["verdicts"] == ["PASS"] and data["cycles"] == 1
    assert data["commits"] == 1
    assert data["branch"] == "feature/add-a-greeting-to-the-readme"
    assert data["pr_url"] == f"https://github.com/{github['repo']}/pull/1"
    # pushed over HTTPS with the token from the credential helper, as x-access-token
    assert git("--git-dir", str(github["upstream"]), "log", "--format=%s", data["branch"]).splitlines()[0] == "Add greeting"
    pushes = [seen for seen in github["server"].auth_seen if "git-receive-pack" in seen[1] and seen[3]]
    assert pushes and all(user == "x-access-token" for _, _, user, _ in pushes)
    # the PR: draft first, then ready; the review with one inline and one general comment
    pr = coding_env.gh_prs()["1"]
    assert pr["isDraft"] is False and pr["head"] == data["branch"] and pr["base"] == "main"
    assert pr["title"] == TASK and "Add greeting" in pr["body"] and "Created by coding-agent (claude" in pr["body"]
    (review,) = pr["reviews"]
    assert review["comments"] == [{"path": "README.md", "line": 2, "side": "RIGHT", "body": "The greeting could be friendlier."}]
    assert "Consider a changelog entry." in review["body"] and "PASS" in review["body"]
    calls = coding_env.gh_calls()
    assert [c["argv"][:2] for c in calls] == [["pr", "create"], ["api", "--method"], ["pr", "ready"]]
    assert "--draft" in calls[0]["argv"] and all(c["token_ok"] for c in calls)
    assert_back_on_main(coding_env, github["repo"])


def test_provider_contract_for_claude(coding_env, github):
    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": "VERDICT: PASS\n"}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--model", "opus",
                        config=github["config"])
    assert data["outcome"] == "ready"
    coder, reviewer = coding_env.agent_calls()
    work = str(clone_dir(coding_env, github["repo"]))
    for call in (coder, reviewer):
        assert call.get("error") is None
        assert call["stdin"] == "/dev/null" and call["own_process_group"] is True
        assert call["secret_env"] == [] and call["claudecode_env"] is False
        assert os.path.realpath(call["cwd"]) == os.path.realpath(work)
    argv = coder["argv"]
    assert argv[:2] == ["--print", "--dangerously-skip-permissions"] and argv[2].startswith("--append-system-prompt=")
    system = coder["parsed"]["system"]
    assert system == argv[2].split("=", 1)[1]
    assert TASK in system and "Your branch: feature/add-a-greeting-to-the-readme" in system
    assert "Default branch: main" in system and "BLOCKED.md" in system and "Do not push" in system
    assert system.count("\n1. ") == 1 and "\n7. " in system and "\n8. " not in system  # the seven rules
    assert argv[3:5] == ["--model=opus", "--"] and argv[5].startswith("Read the task in your system prompt")
    assert coder["parsed"]["model"] == "opus"
    # the review model comes from the review profile (medium → sonnet), not from --model
    assert reviewer["parsed"]["model"] == "sonnet"
    assert "VERDICT: PASS" in reviewer["parsed"]["system"] and "+Hello!" in reviewer["argv"][-1]


def test_fail_then_pass_runs_a_fix_round(coding_env, github):
    coding_env.script([
        commit({"README.md": "# demo\nHello nobody\n"}),
        {"do": "review", "output": FAIL_REVIEW},
        commit({"README.md": "# demo\nHello world\n"}, "Greet the world"),
        {"do": "review", "output": "Fixed.\nVERDICT: PASS\n"},
    ])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=github["config"])
    assert result.exit_code == 0
    assert data["outcome"] == "ready" and data["verdicts"] == ["FAIL", "PASS"] and data["cycles"] == 2
    assert data["commits"] == 2
    assert git("--git-dir", str(github["upstream"]), "log", "--format=%s", data["branch"]).splitlines()[:2] == [
        "Greet the world", "Add greeting"]
    fix_call = coding_env.agent_calls()[2]
    assert "Say hello to the world, not to nobody." in fix_call["argv"][-1] and "README.md:2" in fix_call["argv"][-1]
    pr = coding_env.gh_prs()["1"]
    assert pr["isDraft"] is False and len(pr["reviews"]) == 1  # cycle 1: inline comment
    assert [c["body"] for c in pr["comments"]] == ["Automated review, cycle 2/2: **PASS**"]  # cycle 2: none
    assert_back_on_main(coding_env, github["repo"])


def test_fail_to_the_end_leaves_a_draft(coding_env, github):
    coding_env.script([
        commit({"README.md": "# demo\nHello nobody\n"}),
        {"do": "review", "output": FAIL_REVIEW},
        commit({"README.md": "# demo\nHello again nobody\n"}, "Try again"),
        {"do": "review", "output": FAIL_REVIEW},
    ])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--max-review-cycles", "2",
                        config=github["config"])
    assert result.exit_code == 0
    assert data["outcome"] == "draft" and data["verdicts"] == ["FAIL", "FAIL"] and data["cycles"] == 2
    assert len(coding_env.agent_calls()) == 4  # no fix round after the last review
    pr = coding_env.gh_prs()["1"]
    assert pr["isDraft"] is True and len(pr["reviews"]) == 2
    assert not any(c["argv"][:2] == ["pr", "ready"] for c in coding_env.gh_calls())
    assert_back_on_main(coding_env, github["repo"])


def test_no_commit_fails_without_push(coding_env, github):
    coding_env.script([{"do": "none", "stdout": "I did nothing."}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=github["config"])
    assert result.exit_code == 1 and data["outcome"] == "failed" and data["commits"] == 0
    assert "no commits" in data["message"] and data["pr_url"] is None
    assert git("--git-dir", str(github["upstream"]), "branch", "--format=%(refname:short)") == "main"
    assert coding_env.gh_calls() == []
    work = clone_dir(coding_env, github["repo"])
    assert git("branch", "--format=%(refname:short)", cwd=work) == "main"  # the empty branch is gone
    assert_back_on_main(coding_env, github["repo"])


def test_blocked_reports_the_reason_and_opens_nothing(coding_env, github):
    coding_env.script([{"do": "blocked", "text": "Need the API key for the payment sandbox.\n"}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=github["config"])
    assert result.exit_code == 3 and data["outcome"] == "blocked"
    assert data["blocked_reason"] == "Need the API key for the payment sandbox."
    assert data["pr_url"] is None and coding_env.gh_calls() == []
    assert git("--git-dir", str(github["upstream"]), "branch", "--format=%(refname:short)") == "main"
    assert_back_on_main(coding_env, github["repo"])


def test_hanging_provider_is_killed_with_its_children(coding_env, github):
    pid_file = coding_env.root / "child.pid"
    coding_env.script([{"do": "hang", "pid_file": str(pid_file)}])
    started = time.monotonic()
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--timeout", "2",
                        config=github["config"])
    assert time.monotonic() - started < 30
    assert data["outcome"] == "failed" and "timed out" in data["message"]
    child = int(pid_file.read_text())
    for _ in range(50):
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the provider's child survived the timeout")
    assert_back_on_main(coding_env, github["repo"])


def test_uncommitted_leftovers_are_stashed_not_lost(coding_env, github):
    coding_env.script([{"do": "dirty", "files": {"notes.txt": "half done\n"}}])
    work = clone_dir(coding_env, github["repo"])
    result, data = code(coding_env, "--repo", github["repo"], "--task", "Another change", "--skip-review",
                        config=github["config"])
    # no commit → failed, but the uncommitted file is kept in a stash, not thrown away
    assert data["outcome"] == "failed" and data["stashed"] == ["feature/another-change"]
    assert "keystone coding: uncommitted work on feature/another-change" in git("stash", "list", cwd=work)
    assert "half done" in git("show", "stash@{0}^3:notes.txt", cwd=work)
    assert_back_on_main(coding_env, github["repo"])


def test_reviewer_changes_are_undone(coding_env, github):
    coding_env.script([
        commit({"README.md": "# demo\nHello!\n"}),
        {"do": "commit", "files": {"README.md": "reviewer rewrote it\n"}, "message": "Reviewer sneaks a commit",
         "stdout": "VERDICT: PASS\n"},
    ])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=github["config"])
    assert data["outcome"] == "ready" and data["commits"] == 1
    subjects = git("--git-dir", str(github["upstream"]), "log", "--format=%s", data["branch"])
    assert "Reviewer sneaks a commit" not in subjects
    work = clone_dir(coding_env, github["repo"])
    assert "Reviewer sneaks a commit" not in git("log", "--format=%s", data["branch"], cwd=work)


def test_dirty_clone_is_refused(coding_env, github):
    coding_env.script([commit({"README.md": "x\n"})])
    code(coding_env, "--repo", github["repo"], "--task", TASK, "--skip-review", config=github["config"])
    work = clone_dir(coding_env, github["repo"])
    (work / "local-edit.txt").write_text("mine\n")
    calls_before = len(coding_env.agent_calls())
    result, data = code(coding_env, "--repo", github["repo"], "--task", "Other", config=github["config"])
    assert result.exit_code == 1 and data["outcome"] == "error"
    assert "uncommitted changes (local-edit.txt)" in data["message"]
    assert (work / "local-edit.txt").read_text() == "mine\n"
    assert len(coding_env.agent_calls()) == calls_before


def test_branch_names_are_deduplicated(coding_env, github):
    seed = coding_env.root / "seed"
    git("clone", "-q", str(github["upstream"]), str(seed))
    git("push", "-q", "origin", "main:feature/add-a-greeting-to-the-readme", cwd=seed)
    coding_env.script([commit({"README.md": "# demo\nHello!\n"})])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--skip-review",
                        config=github["config"])
    assert data["branch"] == "feature/add-a-greeting-to-the-readme-2" and len(data["branch"]) <= 40


def test_default_branch_is_detected_and_fast_forwarded(coding_env, git_http_server, request):
    owner = "acmetrunk"
    upstream = make_upstream(git_http_server.root, owner, "widget", default="trunk")
    config = coding_env.write_config(cloneUrl=f"{git_http_server.url}/{{owner}}/{{repo}}.git")
    os.environ["FAKE_GH_UPSTREAM"] = str(upstream)
    try:
        coding_env.script([commit({"a.txt": "1\n"}), commit({"b.txt": "2\n"})])
        _, first = code(coding_env, "--repo", f"{owner}/widget", "--task", "First", "--skip-review", config=config)
        assert first["outcome"] == "draft"
        # upstream moves on; the next run starts from the new tip
        seed = coding_env.root / "seed"
        git("clone", "-q", str(upstream), str(seed))
        (seed / "upstream.txt").write_text("new\n")
        git("add", "-A", cwd=seed)
        git("commit", "-q", "-m", "Upstream change", cwd=seed)
        git("push", "-q", "origin", "trunk", cwd=seed)
        _, second = code(coding_env, "--repo", f"{owner}/widget", "--task", "Second", "--skip-review", config=config)
        assert second["outcome"] == "draft"
        assert "Upstream change" in git("--git-dir", str(upstream), "log", "--format=%s", second["branch"])
        assert coding_env.gh_prs()["2"]["base"] == "trunk"
        work = clone_dir(coding_env, f"{owner}/widget")
        assert git("symbolic-ref", "--short", "HEAD", cwd=work) == "trunk"
    finally:
        os.environ.pop("FAKE_GH_UPSTREAM", None)


@pytest.mark.parametrize("bad", ["../etc", "acme/..", "-upload-pack=x/y", "a/b/c", "acme/-x", "acme", "a b/c"])
def test_bad_repo_names_are_refused(coding_env, bad):
    config = coding_env.write_config(cloneUrl="file:///nonexistent/{owner}/{repo}.git")
    result, data = code(coding_env, "--repo", bad, "--task", TASK, config=config)
    assert result.exit_code == 1 and data["outcome"] == "error" and "--repo" in data["message"]
    assert not (coding_env.home / "notes/.repos").exists() or not any((coding_env.home / "notes/.repos").rglob("*"))
    assert coding_env.agent_calls() == []


@pytest.mark.parametrize("provider", ["codex", "gemini"])
def test_codex_and_gemini_providers(coding_env, github, provider):
    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": "VERDICT: PASS\n"}])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, "--provider", provider,
                        "--model", "m-1", config=github["config"])
    assert data["outcome"] == "ready" and data["provider"] == provider
    coder, reviewer = coding_env.agent_calls()
    assert coder["cli"] == provider and coder.get("error") is None
    assert coder["stdin"] == "/dev/null" and coder["own_process_group"] and coder["secret_env"] == []
    if provider == "codex":
        assert coder["argv"][:4] == ["exec", "--full-auto", "--model=m-1", "--"]
        instructions = coder["argv"][-1]
    else:
        assert coder["argv"][0].startswith("--prompt=") and "--yolo" in coder["argv"]
        instructions = coder["argv"][0].split("=", 1)[1]
    assert coder["parsed"]["model"] == "m-1"
    assert TASK in instructions and "BLOCKED.md" in instructions and "Read the task" in instructions
    assert reviewer["parsed"]["model"] != "m-1"


def test_review_only_prints_the_review_and_changes_nothing(coding_env, github):
    coding_env.script([commit({"README.md": "# demo\nHello!\n"})])
    _, created = code(coding_env, "--repo", github["repo"], "--task", TASK, "--skip-review", config=github["config"])
    coding_env.script([{"do": "review", "output": PASS_WITH_COMMENTS}])
    result, data = code(coding_env, "--repo", github["repo"], "--review-only", "1", config=github["config"])
    assert result.exit_code == 0 and data["outcome"] == "reviewed" and data["verdicts"] == ["PASS"]
    assert data["review"]["comments"][0] == {"path": "README.md", "line": 2, "body": "The greeting could be friendlier."}
    assert data["branch"] == created["branch"]
    assert "+Hello!" in coding_env.agent_calls()[-1]["argv"][-1]
    pr = coding_env.gh_prs()["1"]
    assert pr["isDraft"] is True and pr["reviews"] == []  # nothing posted, nothing marked
    assert_back_on_main(coding_env, github["repo"])


def test_no_token_in_logs_events_argv_or_output(coding_env, github, monkeypatch):
    wrap_log = coding_env.root / "git-argv.log"
    monkeypatch.setenv("REAL_GIT", shutil.which("git"))
    monkeypatch.setenv("GITWRAP_LOG", str(wrap_log))
    monkeypatch.setenv("PATH", f"{Path(__file__).parent / 'gitwrap'}{os.pathsep}{os.environ['PATH']}")
    coding_env.script([
        commit({"README.md": "# demo\nHello\n"}),
        {"do": "review", "output": FAIL_REVIEW, "stdout": ""},
        commit({"README.md": "# demo\nHello world\n"}, "Fix"),
        {"do": "review", "output": PASS_WITH_COMMENTS},
    ])
    result, data = code(coding_env, "--repo", github["repo"], "--task", TASK, config=github["config"])
    assert data["outcome"] == "ready", data["message"]
    git_argv = wrap_log.read_text()
    assert "clone" in git_argv and "push" in git_argv and "credential.helper" in git_argv
    texts = {"stdout": result.stdout, "stderr": result.stderr, "git argv": git_argv,
             "provider calls": coding_env.agent_log.read_text(), "gh calls": (coding_env.gh_state / "calls.jsonl").read_text()}
    for path in coding_env.home.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    assert any("code_finish" in text for text in texts.values())  # the event log was among them
    for where, text in texts.items():
        assert TOKEN not in text, where
        assert FORGEJO_TOKEN not in text, where
    remote = git("remote", "get-url", "origin", cwd=clone_dir(coding_env, github["repo"]))
    assert TOKEN not in remote and "@" not in remote


# --- Forgejo -----------------------------------------------------------------------------------------
@pytest.fixture
def forgejo(coding_env, forgejo_server):
    upstream = make_upstream(forgejo_server.repos_root, "team", "tool")
    config = coding_env.write_forgejo_config(forgejo_server.url, cloneUrl=f"file://{forgejo_server.repos_root}/{{owner}}/{{repo}}.git")
    return {"repo": "team/tool", "upstream": upstream, "config": config, "server": forgejo_server}


def test_forgejo_pass_with_comments_drops_wip(coding_env, forgejo):
    coding_env.script([commit({"README.md": "# demo\nHello!\n"}), {"do": "review", "output": PASS_WITH_COMMENTS}])
    result, data = code(coding_env, "--repo", forgejo["repo"], "--task", TASK, config=forgejo["config"])
    assert result.exit_code == 0 and data["outcome"] == "ready" and data["forge"] == "forgejo"
    server = forgejo["server"]
    pull = server.pulls[("team", "tool")][1]
    assert pull["title"] == TASK and pull["head"] == data["branch"] and pull["base"] == "main"
    assert data["pr_url"] == f"{server.url}/team/tool/pulls/1"
    (review,) = server.reviews
    assert review["state"] == "COMMENT" and review["comments"] == [
        {"path": "README.md", "body": "The greeting could be friendlier.", "new_position": 2}]
    assert "Consider a changelog entry." in review["body"]
    assert all(authorized for _, _, authorized in server.requests)
    methods = [(m, p.split("/api/v1/repos/team/tool")[1]) for m, p, _ in server.requests]
    assert methods == [("POST", "/pulls"), ("POST", "/pulls/1/reviews"), ("GET", "/pulls/1"), ("PATCH", "/pulls/1")]
    assert coding_env.gh_calls() == []
    assert_back_on_main(coding_env, forgejo["repo"])


def test_forgejo_draft_title_and_comment_fallback(coding_env, forgejo):
    forgejo["server"].reject_reviews = True
    coding_env.script([
        commit({"README.md": "# demo\nHello nobody\n"}),
        {"do": "review", "output": FAIL_REVIEW},
    ])
    result, data = code(coding_env, "--repo", forgejo["repo"], "--task", TASK, "--max-review-cycles", "1",
                        config=forgejo["config"])
    assert data["outcome"] == "draft" and data["verdicts"] == ["FAIL"]
    pull = forgejo["server"].pulls[("team", "tool")][1]
    assert pull["title"] == f"WIP: {TASK}"
    (comment,) = forgejo["server"].comments  # inline refused (422) → one issue comment with everything
    assert "`README.md:2`" in comment["body"] and "Say hello to the world" in comment["body"]


def test_installed_script_exit_code_and_json(coding_env, github):
    """The real console script: JSON alone on stdout, events on stderr, exit 3 for blocked."""
    import subprocess
    import sys

    coding_env.script([{"do": "blocked", "text": "No access to the staging database.\n"}])
    script = Path(sys.executable).parent / "keystone-agent"
    proc = subprocess.run(
        [str(script), "code", "--home", str(coding_env.home), "--config", str(github["config"]), "--repo",
         github["repo"], "--task", TASK, "--json"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    assert data["outcome"] == "blocked" and data["blocked_reason"] == "No access to the staging database."
    assert 'event="code_finish"' in proc.stderr and 'status="blocked"' in proc.stderr
