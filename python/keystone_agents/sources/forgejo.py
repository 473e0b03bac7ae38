"""The Forgejo/Gitea source, through the REST API at forgejo.url + /api/v1 (never a hard-coded host), with
the token from forgejo.tokenFile in the `Authorization: token …` header (and nowhere else):

1. notifications           GET /notifications?all=true&limit=50           (never marked read)
   → each open Issue / Pull subject (subject.url), with its latest comment (subject.latest_comment_url)
2. assigned issues         GET /repos/issues/search?type=issues&state=open&assigned=true&limit=50
3. review requested        GET /repos/issues/search?type=pulls&state=open&review_requested=true&limit=50
4. the agent's own PRs     GET /repos/issues/search?type=pulls&state=open&created=true&limit=50
   → reviews (GET /repos/{owner}/{repo}/pulls/{index}/reviews) by others in REQUEST_CHANGES or COMMENT,
     with their comments (GET …/reviews/{id}/comments)
Lists follow the `Link: <…>; rel="next"` header. Items: forgejo-issue, forgejo-pr, forgejo-pr-review
(forge_items.py). HTTP goes through httpclient.py: timeouts, connection errors, 429 and 5xx are retried
(backoff with jitter, Retry-After) within the source's timeout; 401, or 403/429 with X-RateLimit-Remaining: 0,
skips the source with an event (not retried).
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from keystone_agents.sources.base import FetchResult, SourceFailed
from keystone_agents.sources.forge_items import (
    Collector, ForgeDenied, Malformed, WarnsAsSource, is_pull, issue_item, login_lower, review_item,
)

REVIEW_STATES = ("REQUEST_CHANGES", "COMMENT")
PAGES_MAX = 20
DETAILS_MAX = 100


@dataclass
class ForgejoSource(WarnsAsSource):
    settings: Any  # config.ForgejoSettings
    log: Any = None
    timeout: float = 60.0
    name: str = "forgejo"
    project: str | None = None
    requests: list = field(default_factory=list)  # (method, URL) of every request, in order
    _details: int = 0
    _token: str | None = None
    _http: Any = None
    _deadline: float | None = None

    @property
    def base(self) -> str:
        return self.settings.url.rstrip("/") + "/api/v1"

    def _client(self):
        from keystone_agents.httpclient import Client

        if self._http is None:
            headers = {"Accept": "application/json"}
            if self._token:
                headers["Authorization"] = f"token {self._token}"
            self._http = Client(timeout=self.timeout, deadline=self._deadline, headers=headers,
                                on_retry=self._retrying, requests=self.requests)
        return self._http

    def _retrying(self, url: str, attempt: int, why: str, delay: float) -> None:
        if self.log is not None:
            self.log.info("log", msg=f"forgejo: {why} from {urllib.parse.urlsplit(url).path}; retrying in "
                          f"{delay:.1f}s (attempt {attempt + 1})", source=self.name, step="prefetch")

    def _check(self, response) -> Any:
        from keystone_agents.sources.forge_items import Malformed

        status, head = response.status_code, response.headers
        path = urllib.parse.urlsplit(response.url).path
        if status == 401:
            raise ForgeDenied(f"Forgejo authentication failed (HTTP 401) at {self.settings.url}: "
                              "check forgejo.tokenFile")
        if status in (403, 429) and str(head.get("X-RateLimit-Remaining", "")) == "0":
            raise ForgeDenied(f"Forgejo API rate limit exceeded (HTTP {status}) at {self.settings.url}")
        try:
            payload = response.json() if response.content else None
        except ValueError:
            raise Malformed(f"GET {path}: HTTP {status}, malformed JSON") from None
        if status != 200:
            message = payload.get("message") if isinstance(payload, dict) else None
            raise Malformed(f"GET {path}: HTTP {status}" + (f": {message}" if message else ""))
        return payload

    def _get(self, url: str) -> Any:
        from keystone_agents.httpclient import Unreachable

        try:
            return self._check(self._client().request("GET", url))
        except Unreachable as exc:
            raise SourceFailed(f"cannot connect to {self.settings.url}: {exc}") from None

    def _list(self, path: str) -> list[dict]:
        from keystone_agents.httpclient import Unreachable

        out = []
        try:
            for response in self._client().get_pages(self.base + path, PAGES_MAX):
                payload = self._check(response)
                if not isinstance(payload, list):
                    raise Malformed(f"GET {path}: expected a JSON array")
                out.extend(p for p in payload if isinstance(p, dict))
                if not payload:
                    break
        except Unreachable as exc:
            raise SourceFailed(f"cannot connect to {self.settings.url}: {exc}") from None
        return out

    def _detail(self, path_or_url: str, many: bool = False):
        if self._details >= DETAILS_MAX:
            return None
        self._details += 1
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base + path_or_url
        try:
            if many:
                return self._list(url[len(self.base):]) if url.startswith(self.base) else None
            payload = self._get(url)
            return payload if isinstance(payload, dict) else None
        except Malformed as exc:
            self._warn(str(exc))
            return None

    def fetch(self) -> FetchResult:
        started = time.monotonic()
        self.requests, self._details, self._token, self._http = [], 0, None, None
        self._deadline = started + self.timeout  # retries stay within the source's timeout
        if self.settings.token_file:
            from keystone_agents.sources.email_imap import read_secret

            try:
                self._token = read_secret(self.settings.token_file).strip()
            except OSError as exc:
                raise SourceFailed(f"cannot read forgejo.tokenFile {self.settings.token_file}: {exc.strerror}") from None
        try:
            items = self._collect()
        except (ForgeDenied, Malformed) as exc:
            raise SourceFailed(str(exc)) from None
        return FetchResult(self.name, self.project, items, time.monotonic() - started)

    def _latest_comment(self, issue: dict) -> dict | None:
        if not issue.get("comments"):
            return None
        repo = (issue.get("repository") or {}).get("full_name")
        if not repo:
            return None
        comments = self._detail(f"/repos/{repo}/issues/{issue.get('number')}/comments", many=True)
        return comments[-1] if comments else None

    def _collect(self) -> list[dict]:
        user = self.settings.username or ""
        out = Collector(self._warn)
        for note in self._list("/notifications?all=true&limit=50"):
            subject = note.get("subject") or {}
            if subject.get("type") not in ("Issue", "Pull") or not subject.get("url"):
                continue
            if subject.get("state") and subject["state"] != "open":
                continue
            issue = self._detail(subject["url"])
            if not issue or issue.get("state") != "open" or out.has(issue.get("html_url")):
                continue
            if subject.get("type") == "Pull" and login_lower(issue.get("user")) == user.lower():
                continue  # the agent's own PRs: their reviews come below
            issue.setdefault("repository", note.get("repository"))
            latest = self._detail(subject["latest_comment_url"]) if subject.get("latest_comment_url") else None
            out.add(issue_item("forgejo", issue, "notification", latest))
        for issue in self._list("/repos/issues/search?type=issues&state=open&assigned=true&limit=50"):
            if not out.has(issue.get("html_url")):
                out.add(issue_item("forgejo", issue, f"assigned to {user or 'the agent'}", self._latest_comment(issue)))
        for pr in self._list("/repos/issues/search?type=pulls&state=open&review_requested=true&limit=50"):
            if not out.has(pr.get("html_url")):
                out.add(issue_item("forgejo", pr, f"review requested from {user or 'the agent'}",
                                   self._latest_comment(pr)))
        for pr in self._list("/repos/issues/search?type=pulls&state=open&created=true&limit=50"):
            repo = (pr.get("repository") or {}).get("full_name")
            if not repo or not pr.get("number") or not is_pull(pr):
                continue
            reviews = self._detail(f"/repos/{repo}/pulls/{pr['number']}/reviews", many=True) or []
            wanted = [r for r in reviews if r.get("state") in REVIEW_STATES and login_lower(r.get("user")) != user.lower()]
            comments = []
            for review in wanted:
                for comment in self._detail(f"/repos/{repo}/pulls/{pr['number']}/reviews/{review.get('id')}/comments",
                                            many=True) or []:
                    comments.append({**comment, "_review": review.get("id")})
            if wanted:
                out.add(review_item("forgejo", pr, wanted, comments))
        return out.items


