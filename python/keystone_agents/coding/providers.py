"""Provider CLIs that do the coding and the reviewing: claude, codex, gemini — all three implemented.

The original's contract was `agent.coding-agent.<provider> REPO_DIR PROMPT_FILE TIMEOUT [--model M]`; here the
same inputs (working tree, system prompt, timeout, model) map onto each CLI's own non-interactive mode:

- claude: `claude --print --dangerously-skip-permissions --append-system-prompt SYSTEM [--model M] TASK`
- codex:  `codex exec --full-auto [-m M] INSTRUCTIONS` (system prompt and task in one text: codex has no
  append-system-prompt flag)
- gemini: `gemini --prompt INSTRUCTIONS --yolo [-m M]` (likewise)

Every run: working directory = the repository, stdin = /dev/null (a CLI waiting for input would otherwise
hang until the timeout), its own process group (so the timeout kills the CLI *and* whatever it started),
no forge tokens in its environment (only the orchestrator pushes and talks to the forge).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

PROVIDERS = ("claude", "codex", "gemini")
KILL_GRACE_SECONDS = 5
# variables a provider must not see: they would let it push or call the forge itself
SECRET_ENV = (
    "GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN", "GITEA_TOKEN",
    "FORGEJO_TOKEN", "KEYSTONE_CODING_TOKEN_FILE", "KEYSTONE_CODING_TOKEN_HOST",
)


class ProviderError(Exception):
    pass


@dataclass
class ProviderResult:
    provider: str
    exit_code: int | None  # None when killed by the timeout
    timed_out: bool
    duration_seconds: float
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.exit_code == 0

    def describe(self) -> str:
        if self.timed_out:
            return f"{self.provider} timed out after {self.duration_seconds:.0f}s"
        return f"{self.provider} exited with {self.exit_code}"


def combined_instructions(system_prompt: str, task_prompt: str) -> str:
    return f"{system_prompt.rstrip()}\n\n---\n\n{task_prompt.strip()}\n"


def build_argv(provider: str, system_prompt: str, task_prompt: str, model: str | None = None) -> list[str]:
    if provider == "claude":
        argv = ["claude", "--print", "--dangerously-skip-permissions", "--append-system-prompt", system_prompt]
        if model:
            argv += ["--model", model]
        return [*argv, task_prompt]
    if provider == "codex":
        argv = ["codex", "exec", "--full-auto"]
        if model:
            argv += ["-m", model]
        return [*argv, combined_instructions(system_prompt, task_prompt)]
    if provider == "gemini":
        argv = ["gemini", "--prompt", combined_instructions(system_prompt, task_prompt), "--yolo"]
        if model:
            argv += ["-m", model]
        return argv
    raise ProviderError(f"unknown provider {provider!r} (claude, codex or gemini)")


def provider_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in SECRET_ENV:
        env.pop(name, None)
    env.pop("CLAUDECODE", None)  # a nested Claude session refuses to start while this is set
    env.update(extra or {})
    return env


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_provider(
    provider: str,
    *,
    repo_dir: Path,
    system_prompt: str,
    task_prompt: str,
    model: str | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> ProviderResult:
    """Run one provider CLI to completion or timeout; the whole process group dies on timeout."""
    argv = build_argv(provider, system_prompt, task_prompt, model)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, cwd=repo_dir, env=provider_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True,
        )
    except FileNotFoundError:
        raise ProviderError(f"{provider}: command {argv[0]!r} not found on PATH") from None
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            try:
                stdout, stderr = proc.communicate(timeout=KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:  # a grandchild escaped the group and holds the pipes
                proc.kill()
                stdout, stderr = "", ""
    finally:
        _kill_group(proc.pid, signal.SIGKILL)  # leftovers of a CLI that exited but left children behind
    return ProviderResult(
        provider=provider,
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration_seconds=time.monotonic() - started,
        stdout=stdout or "",
        stderr=stderr or "",
    )
