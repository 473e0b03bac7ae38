"""What the orchestrator needs from a forge, the adapters' common types, and which adapter a repo gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from keystone_agents.coding.repo import RepoId, url_host
from keystone_agents.coding.review import ReviewComment
from keystone_agents.config import Config

FORGES = ("github", "forgejo")
WIP_PREFIX = "WIP: "


class ForgeError(Exception):
    """A forge call that failed; the message names the call and the forge's answer, never a token."""


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    head: str | None = None
    base: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class PostedReview:
    inline: int  # comments attached to a file and line
    general: int  # comments posted as plain pull-request comments


class Forge(Protocol):
    kind: str

    def create_draft(self, repo: RepoId, *, head: str, base: str, title: str, body: str) -> PullRequest: ...

    def post_review(
        self, repo: RepoId, pr: PullRequest, *, summary: str, comments: Sequence[ReviewComment], commit_sha: str
    ) -> PostedReview: ...

    def mark_ready(self, repo: RepoId, pr: PullRequest) -> None: ...

    def get_pull(self, repo: RepoId, number: int) -> PullRequest: ...


def review_text(summary: str, comments: Sequence[ReviewComment]) -> str:
    """All of a review as one markdown comment (for forges or lines that take no inline comments)."""
    parts = [summary.strip()]
    for comment in comments:
        where = f"`{comment.path}:{comment.line}`" if comment.path and comment.line else (
            f"`{comment.path}`" if comment.path else "General")
        parts.append(f"**{where}**\n\n{comment.body.strip()}")
    return "\n\n---\n\n".join(p for p in parts if p)


def pr_title(task: str, limit: int = 70) -> str:
    first = next((line.strip() for line in task.splitlines() if line.strip()), "Change")
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def choose_forge(config: Config, explicit: str | None, origin_url: str | None) -> str:
    """--forge, else coding.forge, else the existing clone's origin host, else forgejo when only Forgejo is
    configured, else github."""
    if explicit:
        return explicit
    if config.coding.forge:
        return config.coding.forge
    if origin_url:
        host = url_host(origin_url)
        if host and (host == "github.com" or host.endswith(".github.com")):
            return "github"
        if host and config.forgejo and host == url_host(config.forgejo.url):
            return "forgejo"
    if config.forgejo and not config.github:
        return "forgejo"
    return "github"


def clone_url(config: Config, forge: str, repo: RepoId) -> str:
    """The URL a missing clone comes from: coding.cloneUrl's template, else the forge's default."""
    template = config.coding.clone_url
    if template:
        return template.replace("{owner}", repo.owner).replace("{repo}", repo.name)
    if forge == "github":
        return f"https://github.com/{repo.owner}/{repo.name}.git"
    if not config.forgejo:
        raise ForgeError("forge is forgejo but the configuration has no `forgejo` section (url)")
    host = url_host(config.forgejo.url)
    if not host:
        raise ForgeError(f"forgejo.url {config.forgejo.url!r} has no host")
    port = f":{config.forgejo.ssh_port}" if config.forgejo.ssh_port else ""
    return f"ssh://{config.forgejo.ssh_user}@{host}{port}/{repo.owner}/{repo.name}.git"


def make_forge(config: Config, forge: str) -> Forge:
    if forge == "github":
        from keystone_agents.coding.forge_github import GithubForge

        return GithubForge(token_file=config.github.token_file if config.github else None)
    if forge == "forgejo":
        from keystone_agents.coding.forge_forgejo import ForgejoForge

        if not config.forgejo:
            raise ForgeError("forge is forgejo but the configuration has no `forgejo` section (url)")
        return ForgejoForge(base_url=config.forgejo.url, token_file=config.forgejo.token_file)
    raise ForgeError(f"unknown forge {forge!r}")
