"""The coding subagent's provider runs (claude, codex, gemini) through the one provider layer.

The argv of every run is built by the task loop's providers (`keystone_agents.providers`: claude.py, codex.py,
gemini.py), with the configured MCP servers given to the CLI the way the loop gives them (providers/mcp.py: a
0600 file under the state dir, removed after the run). What is the coding subagent's own:

- the system prompt (its rules, the task, the git context): claude gets it as `--append-system-prompt`, codex
  and gemini in front of the prompt (they have no such flag);
- the working directory: the clone, `<agent space>/.repos/OWNER/REPO` (inside the agent space, so the agent's
  CLAUDE.md/AGENTS.md above it still apply);
- the environment: the loop's allow-list (providers/environment.py), the agent's git identity and ssh-agent,
  the configured `environment`, and never a forge token (only the orchestrator pushes and talks to the forge);
- the output is not teed to a log here: the orchestrator writes it to its run log, redacted;
- the agent's policy (docs/policy.md), when the task loop's execute stage set one for the run
  ($KEYSTONE_POLICY_FILE): the provider layer gives each CLI its hooks (claude `--settings=FILE
  --permission-mode=dontAsk`, codex the PreToolUse hook overrides, gemini its hook settings), and the run's
  policy variables reach the CLI, whose hook reads them.

Every run has stdin /dev/null (or the prompt, then EOF), its own process group (the timeout kills the CLI *and*
whatever it started), the stall watchdog and the wall-clock limit of the loop's process runner.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from keystone_agents.providers.base import ProviderError, ProviderResult as RunResult
from keystone_agents.providers.coding import CODING_PROVIDERS

PROVIDERS = CODING_PROVIDERS
POLICY_ENV = "KEYSTONE_POLICY_FILE"  # the policy.json whose hooks the CLI runs (docs/policy.md)
# what the task loop's execute stage sets for the run and the CLI's policy hook reads (policy/outcome.py, hook.py)
RUN_ENV = (POLICY_ENV, "KEYSTONE_POLICY_LOG", "KEYSTONE_TASK_PROJECT", "KEYSTONE_TASK_NAME", "KEYSTONE_RUN_ID",
           "KEYSTONE_COMMS_PARENT")
KILL_GRACE_SECONDS = 5
# variables a provider must not see: they would let it push or call the forge itself
SECRET_ENV = (
    "GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN", "GITEA_TOKEN",
    "FORGEJO_TOKEN", "KEYSTONE_CODING_TOKEN_FILE", "KEYSTONE_CODING_TOKEN_HOST",
)

__all__ = ["PROVIDERS", "ProviderError", "ProviderResult", "provider_env", "run_provider"]


@dataclass
class ProviderResult:
    """One coding-subagent provider run, as the orchestrator reads it."""

    provider: str
    run: RunResult

    @property
    def exit_code(self) -> int | None:  # None when killed by the timeout or the stall watchdog
        return None if self.run.timed_out else self.run.exit_code

    @property
    def timed_out(self) -> bool:
        return self.run.timed_out

    @property
    def duration_seconds(self) -> float:
        return self.run.duration_seconds

    @property
    def output(self) -> str:
        """Everything the CLI printed (stdout, then stderr): what goes to the run log."""
        return self.run.output

    @property
    def answer(self) -> str:
        """The CLI's final answer (claude's `result`, codex's last agent message, gemini's `response`)."""
        return self.run.answer

    @property
    def ok(self) -> bool:
        return self.run.succeeded

    def describe(self) -> str:
        if self.run.stalled:
            return f"{self.provider} stalled (no output) after {self.duration_seconds:.0f}s"
        if self.timed_out:
            return f"{self.provider} timed out after {self.duration_seconds:.0f}s"
        if self.run.exit_code == 0 and self.run.is_error:
            return f"{self.provider} reported an error: {self.run.message}"
        return f"{self.provider} exited with {self.run.exit_code}"


def provider_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The loop's allow-listed environment plus the run's policy variables (RUN_ENV) and `extra` (identity,
    configured `environment`), without forge tokens."""
    from keystone_agents.providers.environment import clean_env

    source = os.environ if base is None else base
    env = clean_env({**{k: source[k] for k in RUN_ENV if source.get(k)}, **(extra or {})}, base=source)
    for name in SECRET_ENV:
        env.pop(name, None)
    return env


def run_provider(
    provider: str,
    *,
    config,
    space,
    run_name: str,
    repo_dir: Path,
    system_prompt: str,
    task_prompt: str,
    model: str | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stall_timeout: float | None = None,
) -> ProviderResult:
    """Run one provider CLI in `repo_dir` to completion, timeout or stall. `run_name` names the run's MCP file
    (`<state>/mcp/<run_name>.json`). Raises ProviderError (unknown provider, CLI not on PATH) and
    providers.mcp.McpError (a server's secret file cannot be read)."""
    from keystone_agents import providers
    from keystone_agents.profiles import Runtime
    from keystone_agents.providers.mcp import plan_for
    from keystone_agents.providers.process import RunOptions

    if provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {provider!r} ({', '.join(PROVIDERS)})")
    child_env = provider_env(env)
    if shutil.which(provider, path=child_env.get("PATH")) is None:
        raise ProviderError(f"{provider}: command {provider!r} not found on PATH")
    cli = providers.get(provider, config)
    cli.system_prompt = system_prompt
    cli.mcp = plan_for(config, space, run_name)  # removed again by cli.run, whatever happens
    cli.policy_file = child_env.get(POLICY_ENV) or None  # set by the task loop's execute stage (policy/outcome.py)
    result = cli.run(task_prompt, Runtime(provider, None, model, None, None), RunOptions(
        log_path=Path(os.devnull), timeout=timeout, kill_grace=KILL_GRACE_SECONDS, env=child_env, cwd=repo_dir,
        stall_timeout=stall_timeout))
    return ProviderResult(provider, result)
