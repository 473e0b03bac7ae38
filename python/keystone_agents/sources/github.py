"""The GitHub source, through `gh api` (gh's login, or the token in github.tokenFile given to gh as GH_TOKEN):

1. participating notifications  GET /notifications?participating=true&all=true&per_page=100   (never marked read)
   → each open Issue / PullRequest subject, with its latest comment (subject.latest_comment_url)
2. issues assigned to the agent GET /issues?filter=assigned&state=open&per_page=100
3. review requested             GET /search/issues?q=is:open is:pr review-requested:<user>&per_page=100
4. the agent's own open PRs     GET /search/issues?q=is:open is:pr author:<user>&per_page=100
   → reviews by others with CHANGES_REQUESTED or COMMENTED, and their inline comments
Every list is read with `--paginate` (gh follows the Link header). Items: github-issue, github-pr,
github-pr-review (forge_items.py). A 401 (authentication) or an exhausted rate limit (403/429) skips the
whole source with an event; a malformed answer to a detail call drops only that detail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from keystone_agents.sources.base import FetchResult, SourceFailed
from keystone_agents.sources.forge_items import (
    Collector, ForgeDenied, Malformed, WarnsAsSource, is_pull, issue_item, review_item,
)

ACCEPT = "Accept: application/vnd.github+json"
REVIEW_STATES = ("CHANGES_REQUESTED", "COMMENTED")
DETAILS_MAX = 100  # detail calls (issue, comments, reviews) per fetch: one run stays well inside the rate limit


# gh exits 1 for any failure and 4 when authentication is required (`gh help exit-codes`); a failure is
# transient when gh says the server answered 5xx or 429, or it could not connect: retried (retry.py)
GH_AUTH_EXIT = 4
TRANSIENT_GH = re.compile(r"HTTP (5\d\d|429)\b|error connecting to|connection reset|connection refused|"
                          r"i/o timeout|TLS handshake timeout|timeout awaiting|EOF", re.I)


class _Transient(Exception):
    """A gh call that may well succeed if repeated."""


def json_values(text: str) -> list[Any]:
    """`gh api --paginate` prints one JSON document per page, back to back: decode them all."""
    decoder, values, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        value, end = decoder.raw_decode(text, pos)
        values.append(value)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return values


def flatten(values: list[Any]) -> list[dict]:
    out: list[dict] = []
    for value in values:
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, dict))
        elif isinstance(value, dict) and isinstance(value.get("items"), list):  # search results
            out.extend(v for v in value["items"] if isinstance(v, dict))
        elif isinstance(value, dict):
            out.append(value)
    return out


@dataclass
class GithubSource(WarnsAsSource):
    settings: Any  # config.GithubSettings
    env: dict | None = None
    log: Any = None
    timeout: float = 60.0
    gh: str = "gh"
    name: str = "github"
    project: str | None = None
    argvs: list[list[str]] = field(default_factory=list)  # every gh argv, in order
    _details: int = 0
    _deadline: float | None = None

    def _env(self) -> dict:
        env = dict(self.env if self.env is not None else os.environ)
        env.update({"GH_PROMPT_DISABLED": "1", "GH_NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1"})
        if self.settings.token_file:
            from keystone_agents.sources.email_imap import read_secret

            try:
                env["GH_TOKEN"] = read_secret(self.settings.token_file).strip()
            except OSError as exc:
                raise SourceFailed(f"cannot read github.tokenFile {self.settings.token_file}: {exc.strerror}") from None
        return env

    def api(self, endpoint: str, paginate: bool = False) -> list[dict]:
        argv = [self.gh, "api"]
        if self.settings.hostname:
            argv += ["--hostname", self.settings.hostname]
        argv += ["--method", "GET", "-H", ACCEPT]
        if paginate:
            argv.append("--paginate")
        argv.append(endpoint)
        from keystone_agents import retry

        def once() -> subprocess.CompletedProcess:
            self.argvs.append(argv)
            budget = retry.remaining(self._deadline)
            try:
                proc = subprocess.run(argv, env=self._env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      timeout=max(1.0, min(self.timeout, budget)))
            except FileNotFoundError:
                raise SourceFailed("gh (GitHub CLI) is not installed or not on PATH") from None
            except subprocess.TimeoutExpired:
                raise _Transient(f"gh api {endpoint} timed out after {min(self.timeout, budget):g}s") from None
            if proc.returncode != 0 and proc.returncode != GH_AUTH_EXIT and TRANSIENT_GH.search(proc.stderr):
                err = proc.stderr.strip()
                raise _Transient(f"gh api {endpoint} failed: {err.splitlines()[-1] if err else proc.returncode}")
            return proc

        def retrying(attempt: int, exc: BaseException, delay: float) -> None:
            if self.log is not None:
                self.log.info("log", msg=f"{exc}; retrying in {delay:.1f}s (attempt {attempt + 1})", source=self.name,
                              step="prefetch")

        try:
            proc = retry.call(once, lambda exc: isinstance(exc, _Transient), deadline=self._deadline,
                              on_retry=retrying)
        except _Transient as exc:
            raise SourceFailed(str(exc)) from None
        if proc.returncode != 0:
            err = proc.stderr.strip()
            last = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
            if "HTTP 401" in err or proc.returncode == GH_AUTH_EXIT:
                raise ForgeDenied(f"GitHub authentication failed (HTTP 401) — run gh auth login or set "
                                  f"github.tokenFile: {last}")
            if ("HTTP 403" in err or "HTTP 429" in err) and "rate limit" in err.lower():
                raise ForgeDenied(f"GitHub API rate limit exceeded: {last}")
            raise Malformed(f"gh api {endpoint} failed: {last}")
        try:
            return flatten(json_values(proc.stdout))
        except ValueError as exc:
            raise Malformed(f"gh api {endpoint} printed malformed JSON: {exc}") from None

    def _detail(self, endpoint: str, paginate: bool = False) -> list[dict] | None:
        if self._details >= DETAILS_MAX:
            return None
        self._details += 1
        try:
            return self.api(endpoint, paginate)
        except Malformed as exc:
            self._warn(str(exc))
            return None

    def fetch(self) -> FetchResult:
        started = time.monotonic()
        self.argvs, self._details = [], 0
        self._deadline = started + self.timeout  # retries stay within the source's timeout
        try:
            items = self._collect()
        except ForgeDenied as exc:
            raise SourceFailed(str(exc)) from None
        except Malformed as exc:
            raise SourceFailed(str(exc)) from None
        return FetchResult(self.name, self.project, items, time.monotonic() - started)

    @staticmethod
    def _path(api_url: str) -> str:
        """An API URL from a payload → the endpoint gh api takes (gh adds the host)."""
        parsed = urllib.parse.urlsplit(api_url)
        path = parsed.path
        if path.startswith("/api/v3/"):  # GitHub Enterprise
            path = path[len("/api/v3"):]
        return path + (f"?{parsed.query}" if parsed.query else "")

    def _latest_comment(self, issue: dict) -> dict | None:
        if not issue.get("comments"):
            return None
        comments = self._detail(self._path(issue.get("comments_url") or "") or
                                f"/repos/{issue.get('repository_url', '').split('/repos/')[-1]}/issues/"
                                f"{issue.get('number')}/comments", paginate=True)
        return comments[-1] if comments else None

    def _collect(self) -> list[dict]:
        user = self.settings.username
        out = Collector(self._warn)
        # 1. participating notifications
        for note in self.api("/notifications?participating=true&all=true&per_page=100", paginate=True):
            subject = note.get("subject") or {}
            if subject.get("type") not in ("Issue", "PullRequest") or not subject.get("url"):
                continue
            reason = note.get("reason") or "notification"
            if subject.get("type") == "PullRequest" and reason == "author":
                continue  # the agent's own PRs: their reviews are step 4
            found = self._detail(self._path(subject["url"]))
            if not found:
                continue
            issue = found[0]
            if issue.get("state") != "open" or out.has(issue.get("html_url")):
                continue
            latest = None
            if subject.get("latest_comment_url") and "/comments/" in subject["latest_comment_url"]:
                comment = self._detail(self._path(subject["latest_comment_url"]))
                latest = comment[0] if comment else None
            out.add(issue_item("github", issue, f"notification ({reason})", latest))
        # 2. assigned issues (and pull requests)
        for issue in self.api("/issues?filter=assigned&state=open&per_page=100", paginate=True):
            if not out.has(issue.get("html_url")):
                out.add(issue_item("github", issue, f"assigned to {user}", self._latest_comment(issue)))
        # 3. review requested
        query = urllib.parse.quote(f"is:open is:pr review-requested:{user}")
        for pr in self.api(f"/search/issues?q={query}&per_page=100", paginate=True):
            if not out.has(pr.get("html_url")):
                out.add(issue_item("github", pr, f"review requested from {user}", self._latest_comment(pr)))
        # 4. reviews on the agent's own pull requests
        query = urllib.parse.quote(f"is:open is:pr author:{user}")
        for pr in self.api(f"/search/issues?q={query}&per_page=100", paginate=True):
            repo = (pr.get("repository_url") or "").split("/repos/")[-1]
            if not repo or not pr.get("number") or not is_pull(pr):
                continue
            reviews = self._detail(f"/repos/{repo}/pulls/{pr['number']}/reviews?per_page=100", paginate=True) or []
            wanted = [r for r in reviews if r.get("state") in REVIEW_STATES
                      and (r.get("user") or {}).get("login", "").lower() != user.lower()]
            if not wanted:
                continue
            comments = self._detail(f"/repos/{repo}/pulls/{pr['number']}/comments?per_page=100", paginate=True) or []
            out.add(review_item("github", pr, wanted, comments))
        return out.items
