"""Forgejo/Gitea through its REST API (`<url>/api/v1`), as its API reference documents:

- create:  POST  /repos/{owner}/{repo}/pulls {head, base, title, body} → 201 PullRequest. Drafts are
           pull requests whose title starts with `WIP:`.
- comment: POST  /repos/{owner}/{repo}/issues/{index}/comments {body} → 201 Comment.
- review:  POST  /repos/{owner}/{repo}/pulls/{index}/reviews {body, event: COMMENT, commit_id,
           comments: [{path, body, new_position}]} → 200 PullReview (inline comments).
- ready:   PATCH /repos/{owner}/{repo}/pulls/{index} {title without WIP:} → 201 PullRequest.
- view:    GET   /repos/{owner}/{repo}/pulls/{index} → 200 PullRequest.
Errors come as {"message": ..., "url": ...} with 401/403/404/409/422/423. The token (forgejo.tokenFile)
goes only into the `Authorization: token …` header. Calls go through httpclient.py (retries on timeouts,
connection errors, 429 and 5xx with backoff and jitter; other 4xx are errors at once).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Sequence

from keystone_agents.coding.credential import read_token
from keystone_agents.coding.forge import WIP_PREFIX, ForgeError, PostedReview, PullRequest, review_text
from keystone_agents.coding.repo import RepoId
from keystone_agents.coding.review import ReviewComment

HTTP_TIMEOUT = 60
CALL_BUDGET = 180  # seconds for one call with its retries (timeouts, connection errors, 429, 5xx)
_WIP = re.compile(r"^\s*(?:WIP:|\[WIP\])\s*", re.I)


@dataclass
class ForgejoForge:
    base_url: str
    token_file: str | None = None
    kind: str = "forgejo"
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every call

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token_file:
            try:
                headers["Authorization"] = f"token {read_token(self.token_file)}"
            except OSError as exc:
                raise ForgeError(f"cannot read forgejo.tokenFile {self.token_file}: {exc.strerror}") from None
        return headers

    def _call(self, method: str, path: str, body: dict | None = None, expect: tuple[int, ...] = (200, 201)) -> Any:
        from keystone_agents.httpclient import Client, Unreachable

        url = self.base_url.rstrip("/") + "/api/v1" + path
        self.requests.append((method, path))
        # transient faults are retried (a repeated "create pull request" for the same head is refused by the
        # forge with 409/422, so a retry after a lost answer cannot open a second one)
        client = Client(timeout=HTTP_TIMEOUT, deadline=time.monotonic() + CALL_BUDGET, headers=self._headers())
        try:
            response = client.request(method, url, json=body)
        except Unreachable as exc:
            raise ForgeError(f"Forgejo {method} {path}: cannot connect: {exc}") from None
        finally:
            client.close()
        status = response.status_code
        try:
            payload = response.json() if response.content else None
        except ValueError:
            payload = None
        if status not in expect:
            message = payload.get("message") if isinstance(payload, dict) else None
            raise ForgeError(f"Forgejo {method} {path}: HTTP {status}: "
                             f"{message or response.content[:200].decode(errors='replace')}")
        return payload

    @staticmethod
    def _repo_path(repo: RepoId) -> str:
        return f"/repos/{urllib.parse.quote(repo.owner, safe='')}/{urllib.parse.quote(repo.name, safe='')}"

    @staticmethod
    def _pull(data: Any) -> PullRequest:
        try:
            return PullRequest(
                number=int(data["number"]),
                url=data["html_url"],
                head=(data.get("head") or {}).get("ref"),
                base=(data.get("base") or {}).get("ref"),
                title=data.get("title"),
            )
        except (KeyError, TypeError, ValueError):
            raise ForgeError("Forgejo answered with a pull request missing number/html_url") from None

    def create_draft(self, repo: RepoId, *, head: str, base: str, title: str, body: str) -> PullRequest:
        data = self._call(
            "POST", f"{self._repo_path(repo)}/pulls",
            {"head": head, "base": base, "title": WIP_PREFIX + _WIP.sub("", title), "body": body}, expect=(201,),
        )
        return self._pull(data)

    def post_review(
        self, repo: RepoId, pr: PullRequest, *, summary: str, comments: Sequence[ReviewComment], commit_sha: str
    ) -> PostedReview:
        inline = [c for c in comments if c.path and c.line]
        general = [c for c in comments if not (c.path and c.line)]
        if inline:
            try:
                self._call(
                    "POST", f"{self._repo_path(repo)}/pulls/{pr.number}/reviews",
                    {
                        "body": review_text(summary, general),
                        "event": "COMMENT",
                        "commit_id": commit_sha,
                        "comments": [{"path": c.path, "body": c.body, "new_position": c.line} for c in inline],
                    },
                    expect=(200,),
                )
                return PostedReview(inline=len(inline), general=len(general))
            except ForgeError:
                pass  # a line the forge will not anchor: the whole review goes in as one comment
        self._call(
            "POST", f"{self._repo_path(repo)}/issues/{pr.number}/comments", {"body": review_text(summary, comments)},
            expect=(201,),
        )
        return PostedReview(inline=0, general=len(comments))

    def mark_ready(self, repo: RepoId, pr: PullRequest) -> None:
        current = self.get_pull(repo, pr.number)
        title = current.title or pr.title or ""
        if _WIP.match(title):
            self._call("PATCH", f"{self._repo_path(repo)}/pulls/{pr.number}", {"title": _WIP.sub("", title)}, expect=(201,))

    def get_pull(self, repo: RepoId, number: int) -> PullRequest:
        return self._pull(self._call("GET", f"{self._repo_path(repo)}/pulls/{number}", expect=(200,)))
