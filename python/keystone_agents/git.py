"""The one git layer: notes sync and the coding subagent both run git through `Git`.

Plain argv lists through subprocess, never a shell; stdin closed; every call has a timeout (network calls a
longer one). Every call gets the same environment — the caller passes it, normally `identity.git_environment`
(who commits, how commits are signed, how SSH authenticates). Network calls (clone, fetch, push, ls-remote) can
also carry a `RemoteAuth`: a token given to git's credential helper for HTTPS remotes, never in a URL or argv.
Failures raise `GitError` carrying what git said, with any password in a URL masked, so messages can be shown
and logged safely.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

LOCAL_TIMEOUT = 120.0  # add/commit/rebase/diff on a big repository
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


class PushRejected(GitError):
    """The push lost a race: the remote branch moved (another clone pushed meanwhile) or a concurrent push held
    or changed its ref. Fetch, rebase and push again."""


# What git says when a push lost a race: the branch moved on (`[rejected]`, non-fast-forward, fetch first), or
# another push held the ref's lock or updated it between our check and our write (`[remote rejected]` with
# "cannot lock ref", "failed to update ref", "incorrect old value", "is at … but expected …").
_RACE = re.compile(r"\[rejected\]|non-fast-forward|fetch first|cannot lock ref|failed to update ref|"
                   r"incorrect old value|but expected|reference already exists|failed to lock", re.I)


def is_race(output: str) -> bool:
    return bool(_RACE.search(output))


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


@dataclass
class RemoteAuth:
    """How network git commands authenticate: a token file given to the credential helper (HTTPS), or
    nothing extra (SSH uses the agent's ssh-agent/keys)."""

    token_file: str | None = None
    token_host: str | None = None

    def git_config_args(self) -> list[str]:
        if not self.token_file:
            return []
        from keystone_agents.coding import credential

        # the empty value resets helpers from other config files, so ours is the only one asked
        return ["-c", "credential.helper=", "-c", f"credential.helper={credential.helper_config_value()}"]

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if self.token_file:
            from keystone_agents.coding import credential

            env[credential.TOKEN_FILE_ENV] = str(self.token_file)
            if self.token_host:
                env[credential.TOKEN_HOST_ENV] = self.token_host
        elif not base.get("GIT_SSH_COMMAND"):
            env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
        return env


@dataclass
class Git:
    """git in one working directory with one environment (default: this process's, with LC_ALL=C)."""

    cwd: Path
    env: Mapping[str, str] | None = None
    auth: RemoteAuth = field(default_factory=RemoteAuth)
    argv_log: list[list[str]] = field(default_factory=list)  # every git argv run (tests scan it for tokens)

    def __post_init__(self) -> None:
        self.cwd = Path(self.cwd)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("LC_ALL", "C")  # a few of git's messages are matched
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float | None = None, cwd: Path | None = None,
            network: bool = False) -> GitResult:
        argv = ["git", *(self.auth.git_config_args() if network else []), *args]
        env = {**self.env, **(self.auth.env(self.env) if network else {})}
        self.argv_log.append(argv)
        if timeout is None:
            timeout = NETWORK_TIMEOUT if network else LOCAL_TIMEOUT
        try:
            proc = subprocess.run(argv, cwd=cwd or self.cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise GitError(args, None, stderr, timed_out=True) from None
        except FileNotFoundError:
            raise GitError(args, None, "git is not installed (not found on PATH)") from None
        result = GitResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise GitError(args, proc.returncode, proc.stderr or proc.stdout)
        return result

    def output(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).stdout.strip()

    out = output

    # ------------------------------------------------------------ repository state

    def is_repository(self) -> bool:
        """`cwd` is the top of a git working tree (not merely inside one)."""
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
        """The commit `ref` names, or None."""
        result = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return result.stdout.strip() or None if result.returncode == 0 else None

    def rev(self, ref: str) -> str:
        """The commit `ref` names; GitError if there is none."""
        return self.output("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")

    def ref_exists(self, ref: str) -> bool:
        return self.run("rev-parse", "--verify", "--quiet", ref, check=False).returncode == 0

    def count(self, revision_range: str) -> int:
        return int(self.output("rev-list", "--count", revision_range) or 0)

    def commit_count(self, base: str, head: str) -> int:
        return self.count(f"{base}..{head}")

    def upstream(self) -> str | None:
        """The configured upstream of HEAD as `remote/branch`, if any."""
        result = self.run("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}", check=False)
        return result.stdout.strip() or None if result.returncode == 0 else None

    def config_get(self, key: str) -> str | None:
        result = self.run("config", "--get", key, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def remote_url(self, remote: str = "origin") -> str | None:
        return self.config_get(f"remote.{remote}.url")

    def dirty_paths(self) -> list[str]:
        """Modified, staged, deleted or untracked (not ignored) files."""
        lines = self.run("status", "--porcelain=v1", "--untracked-files=all").stdout.splitlines()
        return [line[3:] for line in lines if line.strip()]

    def has_changes(self) -> bool:
        return bool(self.dirty_paths())

    def rebase_in_progress(self) -> bool:
        git_dir = self.git_dir()
        return (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists()

    def conflicted_files(self) -> list[str]:
        out = self.run("diff", "--name-only", "--diff-filter=U", check=False).stdout
        return [line for line in out.splitlines() if line]

    def default_branch(self, remote: str = "origin") -> str:
        """`remote`/HEAD, else what the remote says HEAD is, else main or master."""
        proc = self.run("symbolic-ref", "--quiet", "--short", f"refs/remotes/{remote}/HEAD", check=False)
        if proc.returncode == 0 and proc.stdout.strip().startswith(f"{remote}/"):
            return proc.stdout.strip()[len(remote) + 1:]
        proc = self.run("ls-remote", "--symref", remote, "HEAD", check=False, network=True)
        match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD", proc.stdout, re.M)
        if match:
            self.run("remote", "set-head", remote, match.group(1), check=False)
            return match.group(1)
        for candidate in ("main", "master"):
            if self.ref_exists(f"refs/remotes/{remote}/{candidate}"):
                return candidate
        raise GitError(("default-branch",), None, f"cannot tell the default branch of {remote} (no {remote}/HEAD, "
                       "main or master)")

    def branch_exists(self, name: str) -> bool:
        return self.ref_exists(f"refs/heads/{name}") or self.ref_exists(f"refs/remotes/origin/{name}")

    def unique_branch(self, wanted: str, max_len: int = 40) -> str:
        """`wanted`, or `wanted-2`, `-3`, ... (shortened to stay within max_len) when it exists."""
        if not self.branch_exists(wanted):
            return wanted
        for n in range(2, 1000):
            suffix = f"-{n}"
            candidate = wanted[: max_len - len(suffix)].rstrip("-/") + suffix
            if not self.branch_exists(candidate):
                return candidate
        raise GitError(("branch",), None, f"no free branch name near {wanted!r}")

    def log_oneline(self, base: str, head: str) -> str:
        return self.output("log", "--oneline", "--no-decorate", f"{base}..{head}")

    def diff(self, base: str, head: str) -> str:
        return self.run("diff", "--no-color", "--no-ext-diff", f"{base}...{head}").stdout

    # ------------------------------------------------------------ changes

    def commit_all(self, message: str) -> str:
        """Stage everything and commit; → the new commit id."""
        self.run("add", "--all")
        self.run("commit", "--quiet", "--message", message)
        return self.output("rev-parse", "HEAD")

    def fetch(self, remote: str = "origin") -> None:
        self.run("fetch", "--quiet", "--prune", remote, network=True)

    def fast_forward(self, branch: str, remote: str = "origin") -> None:
        self.run("merge", "--ff-only", f"refs/remotes/{remote}/{branch}")

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

    def check_branch_name(self, name: str) -> bool:
        return not name.startswith("-") and self.run("check-ref-format", "--branch", name, check=False).returncode == 0

    def checkout(self, ref: str, *, create: bool = False, detach: bool = False) -> None:
        if create:
            self.run("checkout", "-b", ref)
        elif detach:
            self.run("checkout", "--detach", ref)
        else:
            self.run("checkout", ref, "--")

    def push(self, remote: str, refspec: str, set_upstream: bool = False) -> GitResult:
        """Push one refspec; raises PushRejected when the remote moved on, GitError for anything else."""
        args = ["push", "--porcelain"] + (["--set-upstream"] if set_upstream else []) + [remote, refspec]
        result = self.run(*args, check=False, network=True)
        if result.returncode == 0:
            return result
        if is_race(result.stdout + "\n" + result.stderr):
            raise PushRejected(args, result.returncode, result.stderr or result.stdout)
        raise GitError(args, result.returncode, result.stderr or result.stdout)

    def stash_leftovers(self, message: str) -> bool:
        """Keep uncommitted work (nothing is lost) in a stash; False when there was none."""
        if not self.dirty_paths():
            return False
        identity = []
        if not self.config_get("user.email"):
            identity = ["-c", "user.name=keystone-agent", "-c", "user.email=keystone-agent@localhost"]
        self.run(*identity, "stash", "push", "--include-untracked", "--message", message)
        return True

    def reset_hard(self, ref: str) -> None:
        self.run("reset", "--hard", ref)
        self.run("clean", "-fd")


def clone(url: str, dest: Path, env: Mapping[str, str] | None = None, auth: RemoteAuth | None = None,
          quiet: bool = True) -> Git:
    """Clone `url` into `dest` (parents created) → a Git in the clone. The URL must hold no credentials."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    git = Git(dest, env, auth or RemoteAuth())
    git.run("clone", *(["--quiet"] if quiet else []), "--", url, str(dest), network=True, cwd=dest.parent)
    return git
