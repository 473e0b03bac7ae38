"""GitHub through the `gh` CLI: draft pull requests, review comments, ready for review.

gh is given the token (from github.tokenFile) in its environment as GH_TOKEN, gh's documented way for
non-interactive use; without a token file gh uses its own login. Calls always name the repository with
`--repo OWNER/REPO`, so gh never guesses it from the clone's remotes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Sequence

from keystone_agents.coding.credential import read_token
from keystone_agents.coding.forge import ForgeError, PostedReview, PullRequest, review_text
from keystone_agents.coding.repo import RepoId
from keystone_agents.coding.review import ReviewComment

GH_TIMEOUT = 120
_PR_URL = re.compile(r"https?://\S+/pull/(\d+)")


@dataclass
class GithubForge:
    token_file: str | None = None
    gh: str = "gh"
    kind: str = "github"
    argv_log: list[list[str]] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "GH_PROMPT_DISABLED": "1", "GH_NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1"}
        if self.token_file:
            try:
                env["GH_TOKEN"] = read_token(self.token_file)
            except OSError as exc:
                raise ForgeError(f"cannot read github.tokenFile {self.token_file}: {exc.strerror}") from None
        return env

    def _gh(self, *args: str) -> str:
        argv = [self.gh, *args]
        self.argv_log.append(argv)
        try:
            proc = subprocess.run(
                argv, env=self._env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=GH_TIMEOUT
            )
        except FileNotFoundError:
            raise ForgeError("gh (GitHub CLI) is not installed or not on PATH") from None
        except subprocess.TimeoutExpired:
            raise ForgeError(f"gh {' '.join(args[:2])} timed out after {GH_TIMEOUT}s") from None
        if proc.returncode != 0:
            detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise ForgeError(f"gh {' '.join(args[:2])} failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
        return proc.stdout

    def create_draft(self, repo: RepoId, *, head: str, base: str, title: str, body: str) -> PullRequest:
        out = self._gh(
            "pr", "create", "--repo", str(repo), "--base", base, "--head", head, "--title", title, "--body", body,
            "--draft",
        )
        match = None
        for match in _PR_URL.finditer(out):
            pass
        if match is None:
            raise ForgeError(f"gh pr create printed no pull request URL: {out.strip()[:200]!r}")
        return PullRequest(number=int(match.group(1)), url=match.group(0), head=head, base=base, title=title)

    def post_review(
        self, repo: RepoId, pr: PullRequest, *, summary: str, comments: Sequence[ReviewComment], commit_sha: str
    ) -> PostedReview:
        inline = [c for c in comments if c.path and c.line]
        general = [c for c in comments if not (c.path and c.line)]
        if inline:
            payload = {
                "commit_id": commit_sha,
                "body": review_text(summary, general),
                "event": "COMMENT",
                "comments": [{"path": c.path, "line": c.line, "side": "RIGHT", "body": c.body} for c in inline],
            }
            with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="review-", delete=False) as handle:
                json.dump(payload, handle)
            try:
                self._gh(
                    "api", "--method", "POST", f"repos/{repo.owner}/{repo.name}/pulls/{pr.number}/reviews",
                    "--input", handle.name,
                )
                return PostedReview(inline=len(inline), general=len(general))
            except ForgeError:
                pass  # typically 422: a line outside the diff; the whole review goes in as one comment
            finally:
                os.unlink(handle.name)
        self._gh("pr", "comment", str(pr.number), "--repo", str(repo), "--body", review_text(summary, comments))
        return PostedReview(inline=0, general=len(comments))

    def mark_ready(self, repo: RepoId, pr: PullRequest) -> None:
        self._gh("pr", "ready", str(pr.number), "--repo", str(repo))

    def get_pull(self, repo: RepoId, number: int) -> PullRequest:
        out = self._gh("pr", "view", str(number), "--repo", str(repo), "--json", "number,url,headRefName,baseRefName,title")
        try:
            data = json.loads(out)
            return PullRequest(
                number=int(data["number"]), url=data["url"], head=data["headRefName"], base=data["baseRefName"],
                title=data.get("title"),
            )
        except (ValueError, KeyError, TypeError):
            raise ForgeError(f"gh pr view printed unexpected JSON: {out.strip()[:200]!r}") from None
