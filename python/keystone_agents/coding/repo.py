"""The git layer of the coding subagent: repository names, clone, clean-tree checks, default branch,
branch names, commit counts, push. Plain git argv, never a shell; network commands get the token only
through the credential helper (see credential.py)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from keystone_agents.coding import credential

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
BRANCH_MAX = 40
PREFIXES = ("feature", "fix", "chore", "refactor", "docs")
GIT_TIMEOUT = 300  # seconds for one git command (clone/fetch/push of a large repo included)


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


@dataclass
class RemoteAuth:
    """How network git commands authenticate: a token file given to the credential helper (HTTPS), or
    nothing extra (SSH uses the agent's ssh-agent/keys)."""

    token_file: str | None = None
    token_host: str | None = None

    def git_config_args(self) -> list[str]:
        if not self.token_file:
            return []
        # the empty value resets helpers from other config files, so ours is the only one asked
        return ["-c", "credential.helper=", "-c", f"credential.helper={credential.helper_config_value()}"]

    def env(self) -> dict[str, str]:
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if self.token_file:
            env[credential.TOKEN_FILE_ENV] = str(self.token_file)
            if self.token_host:
                env[credential.TOKEN_HOST_ENV] = self.token_host
        else:
            env.setdefault("GIT_SSH_COMMAND", os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"))
        return env


@dataclass
class Git:
    """git in one working tree. Every call is an argv list; output is text."""

    cwd: Path
    auth: RemoteAuth = field(default_factory=RemoteAuth)
    argv_log: list[list[str]] = field(default_factory=list)  # every git argv run (tests scan it for tokens)

    def run(self, *args: str, check: bool = True, network: bool = False, cwd: Path | None = None) -> subprocess.CompletedProcess:
        argv = ["git", *(self.auth.git_config_args() if network else []), *args]
        env = {**os.environ, "LC_ALL": "C", **(self.auth.env() if network else {})}
        self.argv_log.append(argv)
        try:
            proc = subprocess.run(
                argv, cwd=cwd or self.cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=GIT_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise RepoError(f"git {args[0]} timed out after {GIT_TIMEOUT}s") from None
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise RepoError(f"git {' '.join(args[:2])} failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
        return proc

    def out(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).stdout.strip()

    # --- state -------------------------------------------------------------------------------------
    def is_repo_root(self) -> bool:
        if not (self.cwd / ".git").exists():
            return False
        proc = self.run("rev-parse", "--show-toplevel", check=False)
        return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == self.cwd.resolve()

    def remote_url(self, remote: str = "origin") -> str | None:
        proc = self.run("remote", "get-url", remote, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def dirty_paths(self) -> list[str]:
        lines = self.out("status", "--porcelain", "--untracked-files=all").splitlines()
        return [line[3:] for line in lines if line.strip()]

    def current_branch(self) -> str | None:
        proc = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return proc.stdout.strip() or None

    def rev(self, ref: str) -> str:
        return self.out("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")

    def ref_exists(self, ref: str) -> bool:
        return self.run("rev-parse", "--verify", "--quiet", ref, check=False).returncode == 0

    def default_branch(self) -> str:
        """origin/HEAD, else what the remote says HEAD is, else main or master."""
        proc = self.run("symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD", check=False)
        if proc.returncode == 0 and proc.stdout.strip().startswith("origin/"):
            return proc.stdout.strip()[len("origin/"):]
        proc = self.run("ls-remote", "--symref", "origin", "HEAD", check=False, network=True)
        match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD", proc.stdout, re.M)
        if match:
            self.run("remote", "set-head", "origin", match.group(1), check=False)
            return match.group(1)
        for candidate in ("main", "master"):
            if self.ref_exists(f"refs/remotes/origin/{candidate}"):
                return candidate
        raise RepoError("cannot tell the default branch (no origin/HEAD, main or master)")

    def branch_exists(self, name: str) -> bool:
        return self.ref_exists(f"refs/heads/{name}") or self.ref_exists(f"refs/remotes/origin/{name}")

    def unique_branch(self, wanted: str, max_len: int = BRANCH_MAX) -> str:
        """`wanted`, or `wanted-2`, `-3`, ... (shortened to stay within max_len) when it exists."""
        if not self.branch_exists(wanted):
            return wanted
        for n in range(2, 1000):
            suffix = f"-{n}"
            candidate = wanted[: max_len - len(suffix)].rstrip("-/") + suffix
            if not self.branch_exists(candidate):
                return candidate
        raise RepoError(f"no free branch name near {wanted!r}")

    def commit_count(self, base: str, head: str) -> int:
        return int(self.out("rev-list", "--count", f"{base}..{head}") or 0)

    def log_oneline(self, base: str, head: str) -> str:
        return self.out("log", "--oneline", "--no-decorate", f"{base}..{head}")

    def diff(self, base: str, head: str) -> str:
        return self.run("diff", "--no-color", "--no-ext-diff", f"{base}...{head}").stdout

    # --- changes -----------------------------------------------------------------------------------
    def check_branch_name(self, name: str) -> None:
        if name.startswith("-") or self.run("check-ref-format", "--branch", name, check=False).returncode != 0:
            raise RepoError(f"{name!r} is not a valid branch name")

    def checkout(self, ref: str, *, create: bool = False, detach: bool = False) -> None:
        if create:
            self.run("checkout", "-b", ref)
        elif detach:
            self.run("checkout", "--detach", ref)
        else:
            self.run("checkout", ref, "--")

    def fetch(self) -> None:
        self.run("fetch", "--prune", "origin", network=True)

    def fast_forward(self, branch: str) -> None:
        self.run("merge", "--ff-only", f"refs/remotes/origin/{branch}")

    def push(self, branch: str) -> None:
        self.run("push", "--set-upstream", "origin", f"refs/heads/{branch}:refs/heads/{branch}", network=True)

    def stash_leftovers(self, message: str) -> bool:
        """Keep uncommitted work (nothing is lost) in a stash so the default branch can be checked out."""
        if not self.dirty_paths():
            return False
        identity = []
        if not self.run("config", "user.email", check=False).stdout.strip():
            identity = ["-c", "user.name=keystone-agent", "-c", "user.email=keystone-agent@localhost"]
        self.run(*identity, "stash", "push", "--include-untracked", "--message", message)
        return True

    def reset_hard(self, ref: str) -> None:
        self.run("reset", "--hard", ref)
        self.run("clean", "-fd")


def clone(url: str, dest: Path, auth: RemoteAuth) -> Git:
    """Clone `url` into `dest` (parents created). The URL must hold no credentials."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    git = Git(dest, auth)
    git.run("clone", "--", url, str(dest), network=True, cwd=dest.parent)
    return git


def url_host(url: str) -> str | None:
    """Host of an https/ssh/scp-style git URL (None for local paths)."""
    match = re.match(r"^[a-z][a-z0-9+.-]*://(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)", url)
    if match:
        return match.group(1)
    match = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)", url)  # scp-like git@host:owner/repo
    return match.group(1) if match else None
