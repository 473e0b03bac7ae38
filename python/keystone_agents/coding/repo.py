"""Repository names and branch names of the coding subagent. git itself runs through the one git layer
(keystone_agents/git.py, shared with notes sync); network commands get the token only through the credential
helper (see credential.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
BRANCH_MAX = 40
PREFIXES = ("feature", "fix", "chore", "refactor", "docs")


class RepoError(Exception):
    """A refused or failed repository operation; the message is safe to show (no secrets)."""


@dataclass(frozen=True)
class RepoId:
    owner: str
    name: str

    @classmethod
    def parse(cls, text: str) -> "RepoId":
        """OWNER/REPO with no path traversal and nothing git could read as an option."""
        parts = text.split("/")
        if len(parts) != 2:
            raise RepoError(f"--repo must be OWNER/REPO, got {text!r}")
        for part in parts:
            # first character alphanumeric: no '-' (option injection), no '.'/'..' (traversal)
            if not _NAME.fullmatch(part) or ".." in part or part.endswith(".lock"):
                raise RepoError(
                    f"--repo {text!r}: {part!r} is not a valid owner or repository name "
                    "(letters, digits, '.', '_', '-'; starting with a letter or digit; no '..')"
                )
        name = parts[1][:-4] if parts[1].endswith(".git") and len(parts[1]) > 4 else parts[1]
        return cls(parts[0], name)

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


def slugify(text: str) -> str:
    """lowercase, anything not [a-z0-9] → '-', squeezed and trimmed (the original's slug)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "task"


def branch_name(prefix: str, task: str, max_len: int = BRANCH_MAX) -> str:
    room = max_len - len(prefix) - 1
    slug = slugify(task)[:room].rstrip("-") or "task"
    return f"{prefix}/{slug}"


def url_host(url: str) -> str | None:
    """Host of an https/ssh/scp-style git URL (None for local paths)."""
    match = re.match(r"^[a-z][a-z0-9+.-]*://(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)", url)
    if match:
        return match.group(1)
    match = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)", url)  # scp-like git@host:owner/repo
    return match.group(1) if match else None
