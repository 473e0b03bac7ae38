"""What GitHub and Forgejo/Gitea sources share: turning issues, pull requests and reviews into task items.

    source      <forge>-issue | <forge>-pr | <forge>-pr-review
    source_ref  the issue's or pull request's web URL; `<pr_url>#reviews` for reviews
    title       the issue's title ("Address review: <title>" for reviews)
    description where it is, why the agent sees it, its text and the latest comment (or the reviews)
Items are deduplicated by source_ref within one fetch (a notification and an assignment of the same issue
are one item; the first reason wins)."""

from __future__ import annotations

from typing import Any, Callable

BODY_MAX = 4000
COMMENT_MAX = 2000


class ForgeDenied(Exception):
    """Authentication failed or the rate limit is exhausted: the whole source is skipped."""


class Malformed(Exception):
    """A forge answer that is not what its API reference documents (the detail is dropped, the source goes on)."""


class WarnsAsSource:
    """`_warn`: a `log` event naming the source (GitHub and Forgejo sources share it)."""

    name: str
    log: Any

    def _warn(self, msg: str) -> None:
        if self.log is not None:
            self.log.warning("log", msg=f"source {self.name}: {msg}", step="prefetch", source=self.name)


def _cut(text: Any, limit: int) -> str:
    text = str(text or "").replace("\r\n", "\n").strip()
    return text if len(text) <= limit else text[:limit] + "\n[…]"


def _login(user: Any) -> str:
    return str(user.get("login") or user.get("username") or "") if isinstance(user, dict) else ""


def login_lower(user: Any) -> str:
    """A user's login for comparisons (forges treat logins case-insensitively)."""
    return _login(user).lower()


def repo_of(issue: dict) -> str:
    repo = issue.get("repository")
    if isinstance(repo, dict) and repo.get("full_name"):
        return str(repo["full_name"])
    url = str(issue.get("repository_url") or "")
    if "/repos/" in url:
        return url.split("/repos/", 1)[1].strip("/")
    html = str(issue.get("html_url") or "")
    parts = html.split("/")
    return "/".join(parts[3:5]) if len(parts) > 4 else ""


def is_pull(issue: dict) -> bool:
    return bool(issue.get("pull_request")) or "/pull/" in str(issue.get("html_url") or "") or \
        "/pulls/" in str(issue.get("html_url") or "")


def issue_item(forge: str, issue: dict, reason: str, latest: dict | None) -> dict | None:
    url = issue.get("html_url")
    if not isinstance(url, str) or not url or not issue.get("title"):
        return None
    kind = "pr" if is_pull(issue) else "issue"
    repo = repo_of(issue)
    number = issue.get("number")
    noun = "pull request" if kind == "pr" else "issue"
    lines = [f"{forge.capitalize()} {noun} {repo}#{number}: {issue.get('title')}", f"URL: {url}",
             f"Why: {reason}"]
    labels = [str(l.get("name")) for l in issue.get("labels") or [] if isinstance(l, dict) and l.get("name")]
    if labels:
        lines.append("Labels: " + ", ".join(labels))
    author = _login(issue.get("user"))
    if author:
        lines.append(f"Opened by: {author}")
    lines += ["", _cut(issue.get("body"), BODY_MAX) or "(no description)"]
    if latest:
        lines += ["", f"Latest comment by {_login(latest.get('user')) or 'someone'}"
                      + (f" ({latest.get('html_url')})" if latest.get("html_url") else "") + ":",
                  _cut(latest.get("body"), COMMENT_MAX)]
    return {
        "source": f"{forge}-{kind}", "source_ref": url, "url": url, "title": str(issue.get("title")),
        "description": "\n".join(lines), "repo": repo, "number": number, "reason": reason,
        "labels": labels, "latest_comment_url": (latest or {}).get("html_url"),
    }


def review_item(forge: str, pr: dict, reviews: list[dict], comments: list[dict]) -> dict | None:
    url = pr.get("html_url")
    if not isinstance(url, str) or not url or not reviews:
        return None
    repo = repo_of(pr)
    lines = [f"Reviews on your {forge.capitalize()} pull request {repo}#{pr.get('number')}: {pr.get('title')}",
             f"URL: {url}", ""]
    for review in reviews:
        lines.append(f"- {review.get('state')} by {_login(review.get('user')) or 'someone'}"
                     + (f" ({review.get('html_url')})" if review.get("html_url") else "")
                     + (":" if review.get("body") else ""))
        if review.get("body"):
            lines.append("  " + _cut(review.get("body"), COMMENT_MAX).replace("\n", "\n  "))
        for comment in comments:
            if comment.get("pull_request_review_id") == review.get("id") or comment.get("_review") == review.get("id"):
                where = f"{comment.get('path')}:{comment.get('line') or comment.get('position') or ''}".rstrip(":")
                lines.append(f"  - {where}: " + _cut(comment.get("body"), COMMENT_MAX).replace("\n", "\n    "))
    return {
        "source": f"{forge}-pr-review", "source_ref": f"{url}#reviews", "url": f"{url}#reviews",
        "title": f"Address review: {pr.get('title')}", "description": "\n".join(lines), "repo": repo,
        "number": pr.get("number"), "review_states": sorted({str(r.get("state")) for r in reviews}),
    }


class Collector:
    """Accumulates items in order, one per source_ref; `detail` failures (a malformed comment list) leave the
    item without that detail and are reported through `warn`."""

    def __init__(self, warn: Callable[[str], None]):
        self.items: list[dict] = []
        self.refs: set[str] = set()
        self.warn = warn

    def add(self, item: dict | None) -> None:
        if item and item["source_ref"] not in self.refs:
            self.refs.add(item["source_ref"])
            self.items.append(item)

    def has(self, url: str | None) -> bool:
        return bool(url) and url in self.refs
