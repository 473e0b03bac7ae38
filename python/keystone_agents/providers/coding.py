"""Route code tasks to the coding subagent.

A pending task whose workflow is one of `coding.workflows` is not handed to a model CLI directly: the loop runs
`keystone-agent code --repo OWNER/REPO --task TEXT --json` (branch, commits by a provider, push, draft pull
request, review cycles) as the task's process, under the same timeout, process group and task log as any
provider. `keystone-agent code` writes the outcome to KEYSTONE_TASK_RESULT (completed with the PR URL, or
blocked with BLOCKED.md's text), so the loop records it like an agent's own report.

The repository comes from the task: its `source_ref` when that is an issue or pull request URL, else the first
of its project's `repos` in PROJECTS.yaml.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Mapping

from keystone_agents.providers.base import Invocation, Provider, ProviderResult

CODING_PROVIDERS = ("claude", "codex", "gemini")
_URL_REPO = re.compile(r"^https?://[^/]+/([A-Za-z0-9][\w.-]*)/([A-Za-z0-9][\w.-]*)/(?:issues|pulls?)/\d+")
_REMOTE_REPO = re.compile(r"[:/]([A-Za-z0-9][\w.-]*)/([A-Za-z0-9][\w.-]*?)(?:\.git)?/?$")


def repo_from_url(url: str) -> str | None:
    """OWNER/REPO of an issue/PR URL or a git remote URL (https, ssh://, scp-like)."""
    match = _URL_REPO.match(url) or _REMOTE_REPO.search(url)
    return f"{match.group(1)}/{match.group(2)}" if match else None


def repo_for_task(task: Mapping[str, Any], projects_file: Path) -> str | None:
    ref = str(task.get("source_ref") or "")
    if ref.startswith(("http://", "https://")):
        found = repo_from_url(ref.split("#", 1)[0])
        if found:
            return found
    project = task.get("project")
    if not project:
        return None
    from keystone_agents.taskfile import read_plain

    for entry in read_plain(projects_file, "projects"):
        if isinstance(entry, dict) and entry.get("slug") == project:
            for remote in entry.get("repos") or []:
                found = repo_from_url(str(remote))
                if found:
                    return found
    return None


class CodingRouteProvider(Provider):
    name = "coding"

    def __init__(self, repo: str, task_text: str, home: Path, config_path: Path | None):
        self.repo, self.task_text, self.home, self.config_path = repo, task_text, home, config_path

    def invocation(self, prompt: str, runtime) -> Invocation:
        from keystone_agents.sanitize import fits_in_argument

        stdin = None
        task = f"--task={self.task_text}"
        if not fits_in_argument(self.task_text):
            task, stdin = "--task=-", self.task_text  # `code --task -` reads the task from stdin
        argv = [sys.executable, "-m", "keystone_agents", "code", f"--home={self.home}",
                f"--repo={self.repo}", task, "--json"]
        if self.config_path:
            argv.append(f"--config={self.config_path}")
        if runtime.provider in CODING_PROVIDERS:
            argv.append(f"--provider={runtime.provider}")
            if runtime.model:
                argv.append(f"--model={runtime.model}")
        return Invocation(argv, stdin=stdin)

    def parse(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        super().parse(stdout, stderr, result)
        try:
            outcome = json.loads(stdout)
        except json.JSONDecodeError:
            return
        if isinstance(outcome, dict):
            result.message = f"coding subagent: {outcome.get('outcome')}" + (
                f" {outcome['pr_url']}" if outcome.get("pr_url") else "")


def route(task: Mapping[str, Any], config, space) -> CodingRouteProvider | None:
    """The coding route for this task, or None when its workflow is not a coding workflow."""
    workflow = task.get("workflow")
    if not workflow or workflow not in config.coding.workflows:
        return None
    repo = repo_for_task(task, space.projects_file)
    if repo is None:
        return None
    text = f"{task.get('name')}: {task.get('description')}"
    return CodingRouteProvider(repo, text, space.home, config.source_path)
