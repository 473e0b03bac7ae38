"""One coding-subagent run, end to end: repo → branch → provider commits → push → draft PR → review cycles.

The split the seed describes: the orchestrator (this module) does every git and forge operation; the
provider CLI only edits files and commits on the branch it is given. Whatever happens, the working tree is
returned to the default branch (uncommitted leftovers are stashed, never thrown away).

Outcomes: `ready` (review passed, PR marked ready), `draft` (PR open as draft: review skipped or failed to
the end), `blocked` (the subagent wrote BLOCKED.md; no push, no PR — or, in a fix round, the PR stays a
draft), `failed` (no commit; nothing pushed), `error` (pre-flight, git or forge failure), `reviewed`
(--review-only).
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from keystone_agents import history, profiles, sanitize
from keystone_agents.coding import prompts
from keystone_agents.coding.credential import read_token
from keystone_agents.coding.forge import (
    FORGES, Forge, ForgeError, PullRequest, choose_forge, clone_url, make_forge, pr_title,
)
from keystone_agents.coding.providers import PROVIDERS, ProviderError, ProviderResult, run_provider
from keystone_agents.coding.repo import PREFIXES, RepoError, RepoId, branch_name
from keystone_agents.git import Git, GitError, RemoteAuth, clone
from keystone_agents.git_identity import git_environment, identity_env
from keystone_agents.coding.review import Review, parse_review
from keystone_agents.config import Config
from keystone_agents.events import event_logger
from keystone_agents.lock import try_lock
from keystone_agents.space import AgentSpace, AgentSpaceMissing, require_agent_space
from keystone_agents.timeutil import iso_z

BLOCKED_FILE = "BLOCKED.md"
EXIT_CODES = {"ready": 0, "draft": 0, "reviewed": 0, "failed": 1, "error": 1, "blocked": 3}
EVENT_STATUS = {"ready": "success", "draft": "success", "reviewed": "success", "blocked": "blocked"}


class UsageError(Exception):
    """A request that cannot run as given (bad repo name, missing --task, ...)."""


@dataclass
class CodeRequest:
    repo: str
    task: str | None = None
    branch: str | None = None
    prefix: str = "feature"
    provider: str | None = None
    model: str | None = None
    max_review_cycles: int | None = None
    review_only: int | None = None
    skip_review: bool = False
    timeout: float | None = None
    forge: str | None = None


@dataclass
class CodeResult:
    outcome: str
    repo: str
    branch: str | None = None
    pr_url: str | None = None
    pr_number: int | None = None
    cycles: int = 0
    verdicts: list[str] = field(default_factory=list)
    commits: int = 0
    forge: str | None = None
    provider: str | None = None
    blocked_reason: str | None = None
    message: str | None = None
    stashed: list[str] = field(default_factory=list)
    review: dict[str, Any] | None = None
    log_file: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.outcome, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "pr_url": self.pr_url, "cycles": self.cycles, "verdicts": self.verdicts,
            "commits": self.commits, "branch": self.branch, "repo": self.repo, "pr_number": self.pr_number,
            "forge": self.forge, "provider": self.provider, "blocked_reason": self.blocked_reason,
            "message": self.message, "stashed": self.stashed, "review": self.review, "log_file": self.log_file,
        }


class _Finished(Exception):
    """Ends the run early with a result already filled in."""


class Redactor:
    """Replaces known secrets in text before it reaches a log, an event or an error message."""

    def __init__(self, secrets: list[str]):
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "[REDACTED]")
        return value


def _token_secrets(config: Config) -> list[str]:
    secrets = []
    for settings in (config.github, config.forgejo):
        if settings and settings.token_file:
            try:
                secrets.append(read_token(settings.token_file))
            except OSError:
                pass
    return secrets


class Orchestrator:
    def __init__(self, request: CodeRequest, config: Config, space: AgentSpace, stream: TextIO | None = None):
        self.request = request
        self.config = config
        self.space = space
        self.started = time.monotonic()
        self.started_at = iso_z()
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.run_id = f"code-{stamp}"
        self.log_dir = space.logs_dir / "coding"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        slug = request.repo.replace("/", "+") if _valid_repo(request.repo) else "invalid-repo"
        self.log_file = self.log_dir / f"{stamp}-{slug}.log"
        self.redact = Redactor(_token_secrets(config))
        # one git identity: the orchestrator's git and the provider's commits are the agent's (and signed)
        self.git_env = git_environment(config, space.home)
        self.log = event_logger(
            agent=config.agent_name, unit=f"agent-{config.agent_name}-coding", run_id=self.run_id,
            log_file=self.log_file, stream=stream,
        )
        self.result = CodeResult(outcome="error", repo=request.repo, log_file=str(self.log_file))
        self.git: Git | None = None
        self.default_branch: str | None = None
        self.touched = False  # the run changed the working tree's branch: restore it at the end
        self.delete_branch: str | None = None

    # --- logging -----------------------------------------------------------------------------------
    def event(self, name: str, **fields: Any) -> None:
        self.log.info(name, **{k: self.redact(v) for k, v in fields.items()})

    def record_output(self, label: str, result: ProviderResult) -> None:
        with open(self.log_file, "a", encoding="utf-8") as handle:
            handle.write(f"----- {label}: {result.describe()} -----\n")
            handle.write(self.redact(result.stdout))
            if result.stderr:
                handle.write("\n----- stderr -----\n" + self.redact(result.stderr))
            handle.write("\n----- end -----\n")

    def _policy_allows(self, act: str, detail: str) -> None:
        """The agent's policy decides the orchestrator's own push and pull request (policy/acts.py): refused, or
        waiting for a human's approval, the run ends blocked here (the task: blocked, approval:<id>)."""
        from keystone_agents.policy import acts

        allowed, reason = acts.check(act, detail)
        if not allowed:
            self.result.blocked_reason = self.redact(reason)
            self.event("code_policy_refused", msg=f"{act} refused by the policy: {reason[:200]}", act=act,
                       status="blocked")
            self.finish("blocked", f"{act} refused by the agent's policy: {reason[:300]}")

    def finish(self, outcome: str, message: str | None = None) -> None:
        self.result.outcome = outcome
        if message:
            self.result.message = self.redact(message)
        raise _Finished

    # --- settings ----------------------------------------------------------------------------------
    def coding_runtime(self) -> tuple[str, str | None]:
        resolved = profiles.resolve(self.config, "execute")
        provider = self.request.provider or self.config.coding.provider or (
            resolved.provider if resolved.provider in PROVIDERS else "claude")
        if provider not in PROVIDERS:
            raise UsageError(f"--provider must be one of {', '.join(PROVIDERS)}")
        model = self.request.model or self.config.coding.model or profiles.resolve(
            self.config, "execute", {"provider": provider}).model
        return provider, model

    def review_runtime(self, provider: str) -> tuple[str, str | None]:
        review_provider = self.config.coding.review_provider or provider
        catalog = profiles.profile_catalog(self.config)
        from_profile = catalog.get(self.config.coding.review_profile, {}).get(review_provider)
        model = self.config.coding.review_model or (from_profile.model if from_profile else None)
        return review_provider, model

    @property
    def timeout(self) -> float:
        return float(self.request.timeout or self.config.coding.timeout_seconds)

    def provider_git_env(self) -> dict[str, str]:
        """The agent's git identity and ssh-agent for the provider CLI, whose commits must be the agent's."""
        env = identity_env(self.config, self.space.home)
        if self.git_env.get("SSH_AUTH_SOCK"):
            env["SSH_AUTH_SOCK"] = self.git_env["SSH_AUTH_SOCK"]
        return env

    def auth_for(self, url: str, forge: str) -> RemoteAuth:
        """HTTPS remotes get the forge's token through the credential helper; SSH needs nothing extra."""
        settings = self.config.github if forge == "github" else self.config.forgejo
        if url.startswith(("https://", "http://")) and settings and settings.token_file:
            # git's credential protocol names the host with its port, as in the URL
            netloc = urllib.parse.urlsplit(url).netloc.rpartition("@")[2]
            return RemoteAuth(token_file=settings.token_file, token_host=netloc)
        return RemoteAuth()

    # --- the run -----------------------------------------------------------------------------------
    def run(self) -> CodeResult:
        try:
            self._validate()
            repo = RepoId.parse(self.request.repo)
            lock_path = self.space.state_dir / "coding" / f"{repo.owner}+{repo.name}.lock"
            with try_lock(lock_path) as locked:
                if not locked:
                    self.finish("error", f"another coding run is working in {repo} (lock {lock_path})")
                try:
                    self._run(repo)
                finally:
                    self._restore()
        except _Finished:
            pass
        except (UsageError, RepoError, GitError, ForgeError, ProviderError, AgentSpaceMissing) as exc:
            self.result.outcome = "error"
            self.result.message = self.redact(str(exc))
        duration = time.monotonic() - self.started
        self.event(
            "code_finish", msg=self.result.message or f"coding run {self.result.outcome}",
            status=EVENT_STATUS.get(self.result.outcome, "error"), outcome=self.result.outcome,
            repo=self.request.repo, branch=self.result.branch, pr_url=self.result.pr_url, cycles=self.result.cycles,
            verdicts=self.result.verdicts, commits=self.result.commits, duration_seconds=round(duration, 3),
        )
        self._record_history(duration)
        return self.result

    def _validate(self) -> None:
        request = self.request
        if request.review_only is None and not (request.task and request.task.strip()):
            raise UsageError("--task is required (unless --review-only)")
        if request.prefix not in PREFIXES:
            raise UsageError(f"--prefix must be one of {', '.join(PREFIXES)}")
        if request.provider and request.provider not in PROVIDERS:
            raise UsageError(f"--provider must be one of {', '.join(PROVIDERS)}")
        if request.forge and request.forge not in FORGES:
            raise UsageError(f"--forge must be one of {', '.join(FORGES)}")
        if request.max_review_cycles is not None and request.max_review_cycles < 0:
            raise UsageError("--max-review-cycles must be 0 or more")
        if request.timeout is not None and request.timeout <= 0:
            raise UsageError("--timeout must be positive")

    def _run(self, repo: RepoId) -> None:
        provider, model = self.coding_runtime()
        self.result.provider = provider
        require_agent_space(self.space)  # clones live in the agent space: <notes>/.repos/{owner}/{repo}
        try:  # OWNER/REPO is checked (RepoId); a symlink under .repos/ must not lead elsewhere either
            repo_dir = sanitize.inside(self.space.repos_dir, repo.owner, repo.name, field="--repo")
        except sanitize.PathEscape as exc:
            self.finish("error", str(exc))
        git = self._prepare_repo(repo, repo_dir)
        forge_kind = self.result.forge
        forge = make_forge(self.config, forge_kind)
        if self.request.review_only is not None:
            self._review_only(repo, git, forge, provider)
            return
        self._code(repo, git, forge, provider, model)

    def _prepare_repo(self, repo: RepoId, repo_dir: Path) -> Git:
        origin = None
        if repo_dir.exists():
            git = Git(repo_dir, self.git_env)
            if not git.is_repository():
                self.finish("error", f"{repo_dir} exists but is not a git clone")
            origin = git.remote_url("origin")
            if not origin:
                self.finish("error", f"{repo_dir} has no remote 'origin'")
        forge_kind = choose_forge(self.config, self.request.forge, origin)
        self.result.forge = forge_kind
        if origin is None:
            url = clone_url(self.config, forge_kind, repo)
            self.event("code_clone", msg=f"cloning {repo}", repo=str(repo), forge=forge_kind)
            git = clone(url, repo_dir, self.git_env, self.auth_for(url, forge_kind))
            origin = url
        git.auth = self.auth_for(origin, forge_kind)
        self.git = git
        dirty = git.dirty_paths()
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            self.finish("error", f"refusing to work in {repo_dir}: uncommitted changes ({shown})")
        git.fetch()
        self.default_branch = git.default_branch()
        if git.current_branch() != self.default_branch:
            self.touched = True
            git.checkout(self.default_branch)
        git.fast_forward(self.default_branch)
        self.event(
            "code_start", msg=f"coding in {repo} on {self.default_branch}", status="started", repo=str(repo),
            forge=forge_kind, default_branch=self.default_branch, review_only=self.request.review_only,
        )
        return git

    def _run_agent(self, label: str, provider: str, model: str | None, system: str, task_prompt: str) -> ProviderResult:
        assert self.git is not None
        self.event("code_provider_start", msg=f"{label}: {provider}", step=label, provider=provider, model=model)
        result = run_provider(
            provider, repo_dir=self.git.cwd, system_prompt=system, task_prompt=task_prompt, model=model,
            timeout=self.timeout, env={**self.provider_git_env(), **self.config.environment},
            stall_timeout=self.config.stall_timeout_seconds,
        )
        self.record_output(label, result)
        self.event(
            "code_provider_finish", msg=result.describe(), step=label, provider=provider, model=model,
            exit_code=result.exit_code, timed_out=result.timed_out, duration_seconds=round(result.duration_seconds, 3),
            status="success" if result.ok else "error",
        )
        return result

    def _blocked_text(self) -> str | None:
        assert self.git is not None
        path = self.git.cwd / BLOCKED_FILE
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8", errors="replace").strip() or "(BLOCKED.md is empty)"

    def _back_on(self, branch: str) -> None:
        """Keep the agent's leftovers and make sure the branch is checked out (it must not switch, but may)."""
        assert self.git is not None
        if self.git.stash_leftovers(f"keystone coding: uncommitted work on {branch}"):
            self.result.stashed.append(branch)
            self.event("code_stashed", msg="uncommitted changes left by the subagent were stashed", branch=branch)
        if self.git.current_branch() != branch:
            self.event("code_branch_restored", msg=f"the subagent left {branch}; checking it out again", branch=branch)
            self.git.checkout(branch)

    def _code(self, repo: RepoId, git: Git, forge: Forge, provider: str, model: str | None) -> None:
        task = (self.request.task or "").strip()
        default = self.default_branch
        assert default is not None
        if self.request.branch:
            if not git.check_branch_name(self.request.branch):
                raise RepoError(f"{self.request.branch!r} is not a valid branch name")
            if git.branch_exists(self.request.branch):
                self.finish("error", f"branch {self.request.branch!r} already exists")
            branch = self.request.branch
        else:
            branch = git.unique_branch(branch_name(self.request.prefix, task))
        base_sha = git.rev("HEAD")
        self.touched = True
        git.checkout(branch, create=True)
        self.result.branch = branch
        self.event("code_branch", msg=f"created {branch}", branch=branch, base=base_sha)

        context = prompts.GitContext(str(repo), forge.kind, default, branch, base_sha)
        system = prompts.system_prompt(task, context)
        (self.log_file.with_suffix(".system-prompt.md")).write_text(system, encoding="utf-8")
        result = self._run_agent("code", provider, model, system, prompts.TASK_PROMPT)

        blocked = self._blocked_text()
        self.result.commits = git.commit_count(base_sha, branch)
        if blocked is not None:
            self.result.blocked_reason = self.redact(blocked)
            self._back_on(branch)
            self.finish("blocked", f"the subagent is blocked: {blocked.splitlines()[0][:200]}")
        if self.result.commits == 0:
            self._back_on(branch)
            self.delete_branch = branch
            self.result.branch = None
            self.finish("failed", f"no commits ({result.describe()}); nothing pushed")
        self._back_on(branch)

        self._policy_allows("git.push", f"git push origin {branch} ({repo})")
        git.push("origin", f"refs/heads/{branch}:refs/heads/{branch}", set_upstream=True)
        self.event("code_pushed", msg=f"pushed {branch}", branch=branch, commits=self.result.commits)
        body = (
            f"## Summary\n\n{task}\n\n## Changes\n\n```\n{git.log_oneline(base_sha, branch)}\n```\n\n"
            + ("" if result.ok else f"_Note: {result.describe()}._\n\n")
            + f"---\nCreated by coding-agent ({provider}{', ' + model if model else ''})\n"
        )
        self._policy_allows("pr.create", f"draft pull request {branch} → {default} ({repo})")
        pr = forge.create_draft(repo, head=branch, base=default, title=pr_title(task), body=body)
        self.result.pr_url, self.result.pr_number = pr.url, pr.number
        self.event("code_pr_created", msg=f"draft pull request {pr.url}", pr_url=pr.url, branch=branch)

        cycles = self.request.max_review_cycles
        cycles = self.config.coding.max_review_cycles if cycles is None else cycles
        if self.request.skip_review or cycles == 0:
            self.finish("draft", "review skipped; the pull request stays a draft")
        self._review_cycles(repo, git, forge, pr, task, branch, base_sha, system, provider, model, cycles)

    def _review(self, task: str, head_ref: str, base_ref: str, provider: str, label: str) -> tuple[Review, ProviderResult]:
        assert self.git is not None
        review_provider, review_model = self.review_runtime(provider)
        head_before = self.git.rev("HEAD")
        prompt = prompts.review_prompt(
            task, head_ref, base_ref, self.git.log_oneline(base_ref, head_ref), self.git.diff(base_ref, head_ref)
        )
        result = self._run_agent(label, review_provider, review_model, prompts.REVIEW_SYSTEM_PROMPT, prompt)
        if self.git.rev("HEAD") != head_before or self.git.dirty_paths():
            # a reviewer only reads; whatever it changed is undone so the review stays a review
            self.event("code_review_changes_discarded", msg="the reviewer changed the tree; reset", step=label)
            self.git.reset_hard(head_before)
        return parse_review(result.stdout), result

    def _review_cycles(
        self, repo: RepoId, git: Git, forge: Forge, pr: PullRequest, task: str, branch: str, base_sha: str,
        system: str, provider: str, model: str | None, cycles: int,
    ) -> None:
        default = self.default_branch
        assert default is not None
        for cycle in range(1, cycles + 1):
            head = git.rev("HEAD")
            review, _ = self._review(task, branch, default, provider, f"review-{cycle}")
            self.result.cycles = cycle
            self.result.verdicts.append(review.verdict)
            self.event(
                "code_review", msg=f"review cycle {cycle}/{cycles}: {review.verdict}", cycle=cycle,
                verdict=review.verdict, explicit_verdict=review.explicit, comments=len(review.comments),
                pr_url=pr.url,
            )
            summary = f"Automated review, cycle {cycle}/{cycles}: **{review.verdict}**" + (
                "" if review.explicit else " (the reviewer gave no verdict)")
            try:
                posted = forge.post_review(repo, pr, summary=summary, comments=review.comments, commit_sha=head)
                self.event("code_review_posted", msg="review posted", cycle=cycle, inline=posted.inline,
                           general=posted.general)
            except ForgeError as exc:  # the verdict still counts; a lost comment is not worth the PR
                self.event("code_review_post_failed", msg=str(exc), cycle=cycle, status="degraded")
            if review.passed:
                forge.mark_ready(repo, pr)
                self.event("code_pr_ready", msg=f"marked ready: {pr.url}", pr_url=pr.url, cycle=cycle)
                self.result.commits = git.commit_count(base_sha, branch)
                self.finish("ready")
            if cycle == cycles:
                break
            fix_system = system
            result = self._run_agent(
                f"fix-{cycle}", provider, model, fix_system, prompts.fix_prompt(task, cycle, review.comments_text())
            )
            blocked = self._blocked_text()
            new_commits = git.commit_count(head, branch)
            if blocked is not None:
                self.result.blocked_reason = self.redact(blocked)
                self._back_on(branch)
                self.result.commits = git.commit_count(base_sha, branch)
                self.finish("blocked", f"blocked while fixing review comments: {blocked.splitlines()[0][:200]}")
            self._back_on(branch)
            if new_commits:
                self._policy_allows("git.push", f"git push origin {branch} ({repo}, fix round {cycle})")
                git.push("origin", f"refs/heads/{branch}:refs/heads/{branch}", set_upstream=True)
                self.event("code_pushed", msg=f"pushed {new_commits} fix commit(s)", branch=branch,
                           commits=new_commits, cycle=cycle)
            else:
                self.event("code_fix_no_commits", msg=f"fix round made no commits ({result.describe()})",
                           cycle=cycle, status="degraded")
        self.result.commits = git.commit_count(base_sha, branch)
        self.finish("draft", f"review did not pass after {cycles} cycle(s); the pull request stays a draft")

    def _review_only(self, repo: RepoId, git: Git, forge: Forge, provider: str) -> None:
        number = self.request.review_only
        assert number is not None
        pr = forge.get_pull(repo, number)
        self.result.pr_url, self.result.pr_number, self.result.branch = pr.url, pr.number, pr.head
        if not pr.head or not git.ref_exists(f"refs/remotes/origin/{pr.head}"):
            self.finish("error", f"pull request #{number}'s branch {pr.head!r} is not on origin (a fork?)")
        base = pr.base or self.default_branch or "main"
        self.touched = True
        git.checkout(f"origin/{pr.head}", detach=True)
        task = self.request.task or pr.title or f"pull request #{number}"
        review, result = self._review(task, f"origin/{pr.head}", f"origin/{base}", provider, "review-only")
        self.result.cycles = 1
        self.result.verdicts = [review.verdict]
        self.result.review = {
            "verdict": review.verdict, "explicit": review.explicit,
            "comments": [c.as_dict() for c in review.comments], "output": self.redact(result.stdout),
        }
        self.finish("reviewed")

    def _restore(self) -> None:
        """Back to the default branch, whatever happened; leftovers stashed, an empty branch deleted."""
        git, default = self.git, self.default_branch
        if git is None or default is None or not self.touched:
            return
        try:
            current = git.current_branch() or "detached HEAD"
            if git.stash_leftovers(f"keystone coding: uncommitted work on {current}"):
                self.result.stashed.append(current)
            git.checkout(default)
            if self.delete_branch:
                git.run("branch", "-D", self.delete_branch, check=False)
        except (RepoError, GitError) as exc:
            self.event("code_restore_failed", msg=str(exc), status="error")
            if self.result.outcome not in ("error", "failed"):
                self.result.message = self.redact(f"{self.result.message or ''} (could not restore {default}: {exc})")

    def _record_history(self, duration: float) -> None:
        try:
            history.record_run(self.space.history_db, {
                "run_id": self.run_id, "kind": "coding", "started_at": self.started_at, "finished_at": iso_z(),
                "status": EVENT_STATUS.get(self.result.outcome, "error"), "exit_code": self.result.exit_code,
                "duration_seconds": round(duration, 3), **{k: v for k, v in self.result.as_dict().items() if k != "review"},
            })
        except Exception as exc:  # noqa: BLE001 - history is bookkeeping; the run's result stands
            self.event("code_history_failed", msg=str(exc), status="degraded")


def _valid_repo(text: str) -> bool:
    try:
        RepoId.parse(text)
        return True
    except RepoError:
        return False


def run_code(request: CodeRequest, config: Config, space: AgentSpace, stream: TextIO | None = None) -> CodeResult:
    """Run the coding subagent; the task loop calls this for tasks routed to the coding workflow."""
    return Orchestrator(request, config, space, stream).run()
