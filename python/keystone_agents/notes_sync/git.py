"""A thin layer over the `git` executable: plain argv lists through subprocess, never a shell.

Every call gets the same environment (identity, signing and SSH settings, see `identity.py`) and a timeout;
network calls get a longer one. Failures raise `GitError` carrying what git said, with any password in a
URL masked, so messages can be shown and logged safely.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

LOCAL_TIMEOUT = 120.0  # add/commit/rebase on a big notes repo
NETWORK_TIMEOUT = 300.0  # clone/fetch/push; ssh's ConnectTimeout fails an unreachable host long before

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@")


def redact(text: str) -> str:
    """Mask the password part of any `scheme://user:password@host` in `text`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


class GitError(Exception):
    """A git command failed (or timed out); `detail` is git's own explanation, redacted."""

    def __init__(self, args: Sequence[str], returncode: int | None, stderr: str, timed_out: bool = False):
        self.args_ = [redact(str(a)) for a in args]
        self.returncode = returncode
        self.stderr = redact(stderr or "")
        self.timed_out = timed_out
        super().__init__(f"{shlex.join(['git', *self.args_])}: {self.detail}")

    @property
    def detail(self) -> str:
        if self.timed_out:
            return "timed out"
        return explain(self.stderr) or f"exit code {self.returncode}"


_NOISE = (
    "fatal: could not read from remote repository",
    "please make sure you have the correct access rights",
    "and the repository exists",
)


def explain(stderr: str) -> str:
    """The informative lines of git's stderr, joined (drops git's generic advice after an SSH failure)."""
    lines = []
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line or line.lower().rstrip(".") in _NOISE or line.startswith("hint:"):
            continue
        lines.append(line)
    return "; ".join(lines[:4])


class Git:
    """Run git in one working directory with one environment."""

    def __init__(self, cwd: Path, env: Mapping[str, str] | None = None):
        self.cwd = Path(cwd)
        self.env = dict(os.environ if env is None else env)

    def run(
        self, *args: str, check: bool = True, timeout: float = LOCAL_TIMEOUT, cwd: Path | None = None
    ) -> GitResult:
        argv = ["git", *args]
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd or self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise GitError(args, None, stderr, timed_out=True) from None
        result = GitResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise GitError(args, proc.returncode, proc.stderr)
        return result

    def output(self, *args: str, timeout: float = LOCAL_TIMEOUT) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()

    # ------------------------------------------------------------ repository state

    def is_repository(self) -> bool:
        if not self.cwd.is_dir():
            return False
        result = self.run("rev-parse", "--show-toplevel", check=False)
        return result.returncode == 0 and Path(result.stdout.strip()).resolve() == self.cwd.resolve()

    def git_dir(self) -> Path:
        path = Path(self.output("rev-parse", "--git-dir"))
        return path if path.is_absolute() else self.cwd / path

    def current_branch(self) -> str | None:
        """The checked-out branch (also when it has no commit yet); None on a detached HEAD."""
        result = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return result.stdout.strip() or None if result.returncode == 0 else None

    def rev_parse(self, ref: str) -> str | None:
        result = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return result.stdout.strip() or None if result.returncode == 0 else None

    def count(self, revision_range: str) -> int:
        return int(self.output("rev-list", "--count", revision_range) or 0)

    def upstream(self) -> str | None:
        """The configured upstream of HEAD as `remote/branch`, if any."""
        result = self.run("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}", check=False)
        return result.stdout.strip() or None if result.returncode == 0 else None

    def config_get(self, key: str) -> str | None:
        result = self.run("config", "--get", key, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def remote_url(self, remote: str) -> str | None:
        return self.config_get(f"remote.{remote}.url")

    def has_changes(self) -> bool:
        """Anything to commit: modified, staged, deleted or untracked (not ignored) files."""
        return bool(self.output("status", "--porcelain=v1", "--untracked-files=all"))

    def rebase_in_progress(self) -> bool:
        git_dir = self.git_dir()
        return (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists()

    def conflicted_files(self) -> list[str]:
        out = self.run("diff", "--name-only", "--diff-filter=U", check=False).stdout
        return [line for line in out.splitlines() if line]

    # ------------------------------------------------------------ changes

    def clone(self, url: str, dest: Path) -> None:
        self.run("clone", "--quiet", "--", url, str(dest), timeout=NETWORK_TIMEOUT, cwd=dest.parent)

    def commit_all(self, message: str) -> str:
        """Stage everything and commit; → the new commit id."""
        self.run("add", "--all")
        self.run("commit", "--quiet", "--message", message)
        return self.output("rev-parse", "HEAD")

    def fetch(self, remote: str) -> None:
        self.run("fetch", "--quiet", "--prune", remote, timeout=NETWORK_TIMEOUT)

    def rebase(self, onto: str) -> bool:
        """Rebase HEAD onto `onto`; False when it stopped on a conflict (the rebase is left in progress)."""
        result = self.run("rebase", "--quiet", onto, check=False)
        if result.returncode == 0:
            return True
        if self.rebase_in_progress():
            return False
        raise GitError(("rebase", onto), result.returncode, result.stderr)

    def rebase_abort(self) -> None:
        self.run("rebase", "--abort")

    def create_branch(self, name: str, start: str = "HEAD") -> None:
        self.run("branch", "--", name, start)

    def push(self, remote: str, refspec: str, set_upstream: bool = False) -> GitResult:
        """Push one refspec; raises PushRejected when the remote moved on, GitError for anything else."""
        args = ["push", "--porcelain"] + (["--set-upstream"] if set_upstream else []) + [remote, refspec]
        result = self.run(*args, check=False, timeout=NETWORK_TIMEOUT)
        if result.returncode == 0:
            return result
        if "[rejected]" in result.stdout or "non-fast-forward" in result.stdout + result.stderr or "fetch first" in result.stderr:
            raise PushRejected(args, result.returncode, result.stderr)
        raise GitError(args, result.returncode, result.stderr)


class PushRejected(GitError):
    """The remote branch has commits we have not fetched yet (another clone pushed meanwhile)."""
