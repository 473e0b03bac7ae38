"""Provider CLIs that do the coding and the reviewing: claude, codex, gemini — all three implemented.

The original's contract was `agent.coding-agent.<provider> REPO_DIR PROMPT_FILE TIMEOUT [--model M]`; here the
same inputs (working tree, system prompt, timeout, model) map onto each CLI's own non-interactive mode:

- claude: `claude --print --dangerously-skip-permissions --append-system-prompt=SYSTEM [--model=M] -- TASK`
  (with a policy, docs/policy.md: `--settings=FILE --permission-mode=dontAsk` instead; codex gets the PreToolUse
  hook overrides, gemini `--approval-mode=yolo` and its hook settings in GEMINI_CLI_SYSTEM_SETTINGS_PATH)
- codex:  `codex exec --full-auto [--model=M] -- INSTRUCTIONS` (system prompt and task in one text: codex has
  no append-system-prompt flag)
- gemini: `gemini --prompt=INSTRUCTIONS --yolo [--model=M]` (likewise)

Values are attached with `=` and positionals follow `--`, so no model or task text is read as an option;
instructions longer than one argument may be go to stdin instead (see `build_invocation`).

Every run: working directory = the repository, stdin = /dev/null or the instructions then EOF (a CLI waiting
for input would otherwise hang until the timeout), its own process group (so the timeout kills the CLI *and* whatever it started),
no forge tokens in its environment (only the orchestrator pushes and talks to the forge).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

PROVIDERS = ("claude", "codex", "gemini")
POLICY_ENV = "KEYSTONE_POLICY_FILE"  # the policy.json whose hooks the CLI runs (docs/policy.md)
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


STDIN_NOTE = "(The task is the text above, given on stdin. Carry it out.)"


def _policy_flags(provider: str, policy_file: str | None) -> list[str]:
    """With a policy (policy/render.py): claude's rendered settings and dontAsk instead of skipping
    permissions; codex's PreToolUse hook overrides; gemini's --approval-mode=yolo (its hook settings come in
    the environment, see run_provider)."""
    if not policy_file:
        return {"claude": ["--dangerously-skip-permissions"], "codex": ["--full-auto"], "gemini": ["--yolo"]}[provider]
    from keystone_agents.policy import render

    if provider == "claude":
        return [f"--settings={Path(policy_file).with_name(render.CLAUDE)}", "--permission-mode=dontAsk"]
    if provider == "codex":
        from keystone_agents.providers.codex import _hook_program

        return ["--full-auto", *render.codex_overrides(policy_file, _hook_program(policy_file))]
    return ["--approval-mode=yolo"]


def build_invocation(provider: str, system_prompt: str, task_prompt: str,
                     model: str | None = None, policy_file: str | None = None) -> tuple[list[str], str | None]:
    """(argv, stdin) of one provider run. Values are attached (`--model=M`, `--prompt=TEXT`), positional prompts
    follow `--`, and instructions too long for one argument go to stdin as each CLI documents (claude: the
    prompt on stdin, no positional; codex: PROMPT `-`; gemini: stdin, with -p appended to it)."""
    from keystone_agents.sanitize import fits_in_argument

    if provider == "claude":
        argv = ["claude", "--print", *_policy_flags("claude", policy_file)]
        if fits_in_argument(system_prompt):
            argv.append(f"--append-system-prompt={system_prompt}")
        else:  # the system prompt holds the task: too long for argv, both go on stdin as one text
            argv += [f"--model={model}"] if model else []
            return argv, combined_instructions(system_prompt, task_prompt)
        if model:
            argv.append(f"--model={model}")
        return [*argv, "--", task_prompt], None
    if provider == "codex":
        argv = ["codex", "exec", *_policy_flags("codex", policy_file)]
        if model:
            argv.append(f"--model={model}")
        text = combined_instructions(system_prompt, task_prompt)
        return ([*argv, "--", text], None) if fits_in_argument(text) else ([*argv, "-"], text)
    if provider == "gemini":
        text = combined_instructions(system_prompt, task_prompt)
        stdin = None
        if not fits_in_argument(text):
            stdin, text = text, STDIN_NOTE
        argv = ["gemini", f"--prompt={text}", *_policy_flags("gemini", policy_file)]
        if model:
            argv.append(f"--model={model}")
        return argv, stdin
    raise ProviderError(f"unknown provider {provider!r} (claude, codex or gemini)")


def build_argv(provider: str, system_prompt: str, task_prompt: str, model: str | None = None) -> list[str]:
    return build_invocation(provider, system_prompt, task_prompt, model)[0]


def provider_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in SECRET_ENV:
        env.pop(name, None)
    env.pop("CLAUDECODE", None)  # a nested Claude session refuses to start while this is set
    env.update(extra or {})
    return env


def run_provider(
    provider: str,
    *,
    repo_dir: Path,
    system_prompt: str,
    task_prompt: str,
    model: str | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stall_timeout: float | None = None,
) -> ProviderResult:
    """Run one provider CLI to completion, timeout or stall, with the task loop's process runner: stdin
    closed, its own session and process group (the whole group dies on timeout), and the stall watchdog.
    The output is returned, not teed: the orchestrator logs it redacted."""
    from keystone_agents.providers.process import RunOptions, run_process

    child_env = provider_env(env)
    policy_file = child_env.get(POLICY_ENV) or None  # set by the task loop's execute stage (policy/outcome.py)
    argv, stdin = build_invocation(provider, system_prompt, task_prompt, model, policy_file)
    if policy_file and provider == "gemini":
        from keystone_agents.policy.render import GEMINI

        child_env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = str(Path(policy_file).with_name(GEMINI))
    if shutil.which(argv[0], path=child_env.get("PATH")) is None:
        raise ProviderError(f"{provider}: command {argv[0]!r} not found on PATH")
    proc = run_process(argv, stdin, RunOptions(
        log_path=Path(os.devnull), timeout=timeout, kill_grace=KILL_GRACE_SECONDS, env=child_env, cwd=repo_dir,
        stall_timeout=stall_timeout))
    return ProviderResult(
        provider=provider,
        exit_code=None if proc.timed_out else proc.exit_code,
        timed_out=proc.timed_out,
        duration_seconds=proc.duration_seconds,
        stdout=proc.stdout,
        stderr=proc.stderr,
    )
