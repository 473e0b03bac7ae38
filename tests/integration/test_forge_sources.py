"""GitHub (through the `gh api` stand-in) and Forgejo (REST) sources against a local HTTP server answering as
their API references document: shapes, Link pagination, 401, 403 rate limit, malformed bodies."""

from __future__ import annotations

import json
import os

import pytest

from keystone_agents.config import parse_config
from keystone_agents.sources import SourceFailed
from keystone_agents.sources.forgejo import ForgejoSource
from keystone_agents.sources.github import GithubSource
from tests.conftest import FAKEBIN
from tests.support.forge_api import serve
from tests.support.loop import events, make_home

GH = "https://api.github.com"


@pytest.fixture
def api():
    server, stop = serve()
    yield server
    stop()


def gh_issue(n, title, pr=False, comments=0, user="alice", repo="acme/app"):
    data = {"id": 1000 + n, "number": n, "title": title, "body": f"Body of {title}", "state": "open",
            "html_url": f"https://github.com/{repo}/{'pull' if pr else 'issues'}/{n}",
            "url": f"{GH}/repos/{repo}/issues/{n}", "repository_url": f"{GH}/repos/{repo}",
            "comments_url": f"{GH}/repos/{repo}/issues/{n}/comments", "comments": comments,
            "user": {"login": user}, "labels": [{"name": "bug"}], "assignees": [{"login": "agent"}]}
    if pr:
        data["pull_request"] = {"url": f"{GH}/repos/{repo}/pulls/{n}", "html_url": data["html_url"]}
    return data


def gh_note(n, kind, reason, latest=None, repo="acme/app"):
    path = "pulls" if kind == "PullRequest" else "issues"
    return {"id": str(n), "unread": True, "reason": reason, "updated_at": "2026-01-01T00:00:00Z",
            "repository": {"full_name": repo},
            "subject": {"title": f"subject {n}", "type": kind, "url": f"{GH}/repos/{repo}/{path}/{n}",
                        "latest_comment_url": latest}}


def github_world(api):
    api.route("/notifications", pages=[
        [gh_note(1, "Issue", "mention", latest=f"{GH}/repos/acme/app/issues/comments/11")],
        [gh_note(2, "PullRequest", "review_requested"), gh_note(3, "PullRequest", "author"),
         {"id": "9", "reason": "subscribed", "subject": {"type": "Commit", "url": f"{GH}/repos/acme/app/commits/abc"}}],
    ])
    api.route("/repos/acme/app/issues/1", body=gh_issue(1, "Crash on start"))
    api.route("/repos/acme/app/issues/comments/11", body={"id": 11, "body": "Still crashing on 2.1",
                                                         "user": {"login": "bob"},
                                                         "html_url": "https://github.com/acme/app/issues/1#issuecomment-11"})
    pr2 = gh_issue(2, "Add caching", pr=True)
    pr2.pop("pull_request")  # a pull request object (GET /pulls/N) has no pull_request key
    api.route("/repos/acme/app/pulls/2", body=pr2)
    api.route("/issues", pages=[[gh_issue(1, "Crash on start")], [gh_issue(4, "Write docs", comments=2)]])
    api.route("/repos/acme/app/issues/4/comments", pages=[[{"body": "first", "user": {"login": "x"}}],
                                                          [{"body": "the latest word", "user": {"login": "carol"}}]])
    api.route("/search/issues", match={"q": "is:open is:pr review-requested:agent"},
              body={"total_count": 2, "incomplete_results": False,
                    "items": [gh_issue(2, "Add caching", pr=True), gh_issue(5, "Bump deps", pr=True)]})
    api.route("/search/issues", match={"q": "is:open is:pr author:agent"},
              body={"total_count": 1, "incomplete_results": False, "items": [gh_issue(3, "My feature", pr=True)]})
    api.route("/repos/acme/app/pulls/3/reviews", pages=[
        [{"id": 6, "user": {"login": "bob"}, "state": "APPROVED", "body": "ok"},
         {"id": 7, "user": {"login": "bob"}, "state": "CHANGES_REQUESTED", "body": "Please rename",
          "html_url": "https://github.com/acme/app/pull/3#pullrequestreview-7"}],
        [{"id": 8, "user": {"login": "agent"}, "state": "COMMENTED", "body": "my own note"},
         {"id": 9, "user": {"login": "carol"}, "state": "COMMENTED", "body": "Nice, one question"}]])
    api.route("/repos/acme/app/pulls/3/comments", body=[
        {"id": 70, "pull_request_review_id": 7, "path": "app.py", "line": 3, "body": "call it load_config"}])


def github_source(tmp_path, monkeypatch, api, **settings):
    token = tmp_path / "gh-token"
    token.write_text("ghp_secret123\n")
    config = parse_config({"agentName": "demo", "github": {"username": "agent", "tokenFile": str(token), **settings}})
    log = tmp_path / "fake.jsonl"
    env = {**os.environ, "PATH": f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}", "FAKE_GH_API_URL": api.url,
           "FAKE_BIN_LOG": str(log)}
    return GithubSource(config.github, env=env), log


def test_github_items_from_notifications_assignments_review_requests_and_reviews(api, tmp_path, monkeypatch):
    github_world(api)
    source, log = github_source(tmp_path, monkeypatch, api)
    items = {i["source_ref"]: i for i in source.fetch().data}
    assert {ref: i["source"] for ref, i in items.items()} == {
        "https://github.com/acme/app/issues/1": "github-issue",
        "https://github.com/acme/app/pull/2": "github-pr",
        "https://github.com/acme/app/issues/4": "github-issue",
        "https://github.com/acme/app/pull/5": "github-pr",
        "https://github.com/acme/app/pull/3#reviews": "github-pr-review",
    }
    assert "Still crashing on 2.1" in items["https://github.com/acme/app/issues/1"]["description"]
    assert "the latest word" in items["https://github.com/acme/app/issues/4"]["description"]  # last page's comment
    review = items["https://github.com/acme/app/pull/3#reviews"]
    assert review["review_states"] == ["CHANGES_REQUESTED", "COMMENTED"]
    assert "Please rename" in review["description"] and "app.py:3: call it load_config" in review["description"]
    assert "my own note" not in review["description"] and "APPROVED" not in review["description"]
    assert items["https://github.com/acme/app/pull/2"]["title"] == "Add caching"
    # gh's argv, exactly; the token went to gh as GH_TOKEN, never into argv
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0]["argv"] == ["api", "--method", "GET", "-H", "Accept: application/vnd.github+json", "--paginate",
                                "/notifications?participating=true&all=true&per_page=100"]
    assert all(c["gh_token"] for c in calls)
    assert not any("ghp_secret123" in arg for c in calls for arg in c["argv"])
    assert {auth for _, auth in api.requests} == {"token ghp_secret123"}
    # pagination was followed (page 2 of notifications, assigned issues, comments and reviews)
    assert any(p.startswith("/notifications?") and "page=2" in p for p in api.paths())
    assert any(p.startswith("/repos/acme/app/pulls/3/reviews?") and "page=2" in p for p in api.paths())


def test_github_enterprise_hostname_is_passed_to_gh(api, tmp_path, monkeypatch):
    for path in ("/notifications", "/issues"):
        api.route(path, body=[])
    api.route("/search/issues", body={"total_count": 0, "items": []})
    source, log = github_source(tmp_path, monkeypatch, api, hostname="github.example.com")
    assert source.fetch().data == []
    first = json.loads(log.read_text().splitlines()[0])["argv"]
    assert first[:3] == ["api", "--hostname", "github.example.com"]


@pytest.mark.parametrize("failure, expected", [
    ("unauthorized", "GitHub authentication failed (HTTP 401)"),
    ("rate_limited", "GitHub API rate limit exceeded"),
    ("malformed", "malformed JSON"),
])
def test_github_failures_skip_the_source(api, tmp_path, monkeypatch, failure, expected):
    github_world(api)
    if failure == "malformed":
        api.route("/notifications", raw=b"<html>502 Bad Gateway</html>")
    else:
        getattr(api, failure)("/notifications")
    source, _ = github_source(tmp_path, monkeypatch, api)
    with pytest.raises(SourceFailed) as failed:
        source.fetch()
    assert expected in failed.value.reason
    assert "ghp_secret123" not in failed.value.reason


def test_github_malformed_detail_drops_only_that_detail(api, tmp_path, monkeypatch):
    github_world(api)
    api.route("/repos/acme/app/issues/comments/11", raw=b"{not json")
    source, _ = github_source(tmp_path, monkeypatch, api)
    items = {i["source_ref"]: i for i in source.fetch().data}
    assert "https://github.com/acme/app/issues/1" in items
    assert "Still crashing" not in items["https://github.com/acme/app/issues/1"]["description"]
    assert len(items) == 5


# ---------------------------------------------------------------- Forgejo

V1 = "/api/v1"


def fj_issue(api, n, title, pr=False, comments=0, user="alice", repo="acme/app"):
    return {"id": 2000 + n, "number": n, "title": title, "body": f"Body of {title}", "state": "open",
            "html_url": f"{api.url}/{repo}/{'pulls' if pr else 'issues'}/{n}",
            "url": f"{api.url}{V1}/repos/{repo}/issues/{n}", "comments": comments, "user": {"login": user},
            "labels": [], "repository": {"id": 1, "name": repo.split("/")[1], "owner": repo.split("/")[0],
                                         "full_name": repo},
            "pull_request": {"merged": False} if pr else None}


def forgejo_world(api):
    api.route(f"{V1}/notifications", pages=[
        [{"id": 1, "unread": True, "repository": {"full_name": "acme/app"},
          "subject": {"title": "Crash", "type": "Issue", "state": "open",
                      "url": f"{api.url}{V1}/repos/acme/app/issues/1",
                      "html_url": f"{api.url}/acme/app/issues/1",
                      "latest_comment_url": f"{api.url}{V1}/repos/acme/app/issues/comments/5"}}],
        [{"id": 2, "unread": False, "repository": {"full_name": "acme/app"},
          "subject": {"title": "Old", "type": "Issue", "state": "closed", "url": f"{api.url}{V1}/repos/acme/app/issues/9"}}],
    ])
    api.route(f"{V1}/repos/acme/app/issues/1", body=fj_issue(api, 1, "Crash on start"))
    api.route(f"{V1}/repos/acme/app/issues/comments/5", body={"id": 5, "body": "any news?", "user": {"login": "bob"},
                                                             "html_url": f"{api.url}/acme/app/issues/1#issuecomment-5"})
    api.route(f"{V1}/repos/issues/search", match={"type": "issues", "assigned": "true"},
              pages=[[fj_issue(api, 1, "Crash on start")], [fj_issue(api, 4, "Write docs")]])
    api.route(f"{V1}/repos/issues/search", match={"type": "pulls", "review_requested": "true"},
              pages=[[fj_issue(api, 5, "Bump deps", pr=True)]])
    api.route(f"{V1}/repos/issues/search", match={"type": "pulls", "created": "true"},
              pages=[[fj_issue(api, 3, "My feature", pr=True, user="agent")]])
    api.route(f"{V1}/repos/acme/app/pulls/3/reviews", pages=[[
        {"id": 7, "user": {"login": "bob"}, "state": "REQUEST_CHANGES", "body": "Please rename"},
        {"id": 8, "user": {"login": "bob"}, "state": "APPROVED", "body": "fine"},
        {"id": 9, "user": {"login": "agent"}, "state": "COMMENT", "body": "self"}]])
    api.route(f"{V1}/repos/acme/app/pulls/3/reviews/7/comments",
              body=[{"id": 71, "path": "app.py", "position": 3, "body": "call it load_config"}])


def forgejo_source(tmp_path, api):
    token = tmp_path / "fj-token"
    token.write_text("fj_secret456\n")
    config = parse_config({"agentName": "demo", "forgejo": {"url": api.url, "username": "agent",
                                                             "tokenFile": str(token)}})
    return ForgejoSource(config.forgejo)


def test_forgejo_items(api, tmp_path):
    forgejo_world(api)
    items = {i["source_ref"]: i for i in forgejo_source(tmp_path, api).fetch().data}
    assert {ref: i["source"] for ref, i in items.items()} == {
        f"{api.url}/acme/app/issues/1": "forgejo-issue",
        f"{api.url}/acme/app/issues/4": "forgejo-issue",
        f"{api.url}/acme/app/pulls/5": "forgejo-pr",
        f"{api.url}/acme/app/pulls/3#reviews": "forgejo-pr-review",
    }
    assert "any news?" in items[f"{api.url}/acme/app/issues/1"]["description"]
    review = items[f"{api.url}/acme/app/pulls/3#reviews"]
    assert review["review_states"] == ["REQUEST_CHANGES"]
    assert "app.py:3: call it load_config" in review["description"] and "self" not in review["description"]
    assert {auth for _, auth in api.requests} == {"token fj_secret456"}
    assert any(p.startswith(f"{V1}/notifications?") and "page=2" in p for p in api.paths())
    assert not any("/issues/9" in p for p in api.paths())  # closed subjects are not fetched


@pytest.mark.parametrize("failure, expected", [
    ("unauthorized", "Forgejo authentication failed (HTTP 401)"),
    ("rate_limited", "Forgejo API rate limit exceeded (HTTP 403)"),
    ("malformed", "malformed JSON"),
])
def test_forgejo_failures_skip_the_source(api, tmp_path, failure, expected):
    forgejo_world(api)
    if failure == "malformed":
        api.route(f"{V1}/notifications", raw=b"<html>oops")
    else:
        getattr(api, failure)(f"{V1}/notifications")
    with pytest.raises(SourceFailed) as failed:
        forgejo_source(tmp_path, api).fetch()
    assert expected in failed.value.reason
    assert "fj_secret456" not in failed.value.reason


# ---------------------------------------------------------------- through the loop


def test_loop_ingests_forge_items_and_skips_a_rate_limited_source(api, tmp_path):
    github_world(api)
    forgejo_world(api)
    api.rate_limited(f"{V1}/notifications")
    lh = make_home(tmp_path)
    token = tmp_path / "gh-token"
    token.write_text("ghp_secret123\n")
    lh.config(maxTasks=0, github={"username": "agent", "tokenFile": str(token)},
              forgejo={"url": api.url, "username": "agent"},
              calendar={"url": "http://127.0.0.1:9/cal"})  # calendar events never come through the loop
    result = lh.loop(FAKE_GH_API_URL=api.url)
    assert result.returncode == 3, result.stderr  # degraded: one source skipped
    tasks = {t["source_ref"]: t for t in lh.task_list()}
    assert {ref: t["source"] for ref, t in tasks.items()} == {
        "https://github.com/acme/app/issues/1": "github-issue",
        "https://github.com/acme/app/pull/2": "github-pr",
        "https://github.com/acme/app/issues/4": "github-issue",
        "https://github.com/acme/app/pull/5": "github-pr",
        "https://github.com/acme/app/pull/3#reviews": "github-pr-review",
    }
    assert tasks["https://github.com/acme/app/pull/3#reviews"]["name"] == "address-review-my-feature"
    skipped = [e for e in events(result.stderr, "log") if e.get("source") == "forgejo" and e.get("status") == "error"]
    assert len(skipped) == 1 and "rate limit exceeded" in skipped[0]["reason"]
    assert "ghp_secret123" not in result.stderr
    again = lh.loop(FAKE_GH_API_URL=api.url)
    assert len(lh.task_list()) == 5
    assert events(again.stderr, "run_finish")[-1]["tasks_created"] == "0"
