"""The provider interface and what every provider shares: usage numbers, model-error detection, URLs."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keystone_agents.profiles import Runtime
    from keystone_agents.providers.mcp import McpPlan
    from keystone_agents.providers.process import ProcessResult, RunOptions


def attached(option: str, value: str) -> str:
    """`--option=value`: one argv element, so the CLI's parser cannot read the value as an option of its own
    (a model named `--output=/x` or `-rf` stays a value)."""
    return f"{option}={value}"


def fits_in_argument(text: str) -> bool:
    from keystone_agents.sanitize import fits_in_argument as fits

    return fits(text)


class ProviderError(Exception):
    """The provider cannot be used as configured (unknown name, missing setting)."""


def combined_instructions(system_prompt: str, prompt: str) -> str:
    """The system prompt and the prompt as one text, for a CLI that has no flag adding to its system prompt (codex,
    gemini), or when the system prompt is too long for one argument."""
    return f"{system_prompt.rstrip()}\n\n---\n\n{prompt.strip()}\n"


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    stdin: str | None = None  # the prompt, for providers that read it on stdin
    env: dict[str, str] = field(default_factory=dict)  # added to the run's environment (MCP settings)


@dataclass
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None

    def total(self) -> int:
        if self.total_tokens is not None:
            return self.total_tokens
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@dataclass
class ProviderResult:
    """What one invocation produced, as the loop needs it."""

    exit_code: int | None
    timed_out: bool
    duration_seconds: float
    output: str  # stdout + stderr as written to the task log
    usage: Usage = field(default_factory=Usage)
    is_error: bool = False  # the provider reported failure even if it exited 0
    model_error: bool = False  # the failure is about the model (unknown, overloaded, rate limited)
    message: str = ""
    stalled: bool = False  # killed by the stall watchdog (timed_out is True too)
    # Exit 0 is not enough: the provider's output must show it ran the task (a result, a completion event,
    # any output at all for a plain command). Each provider's `parse` decides.
    evidence: bool = False
    turns: int | None = None  # agentic turns the provider reports (claude's num_turns)
    reason: str = ""  # why it failed, when the provider knows (e.g. max-turns)
    answer: str = ""  # the final answer text (claude's `result`, codex's last agent message, gemini's `response`)
    session_id: str = ""  # the CLI session/thread the run used (for autonomous continuation)
    tool_calls: int | None = None  # tool calls that ran, counted in the event stream (None: not counted)
    stopped: str = ""  # why the runtime stopped the run (maxIterations), "" when it did not

    @property
    def succeeded(self) -> bool:
        return not self.timed_out and self.exit_code == 0 and not self.is_error


# A failure whose output says the model is the problem gets one retry with the fallback model.
MODEL_ERROR_RE = re.compile(
    r"(?i)(not_found_error|model_not_found|overloaded|rate[ _-]?limit|quota|\b(429|529)\b|"
    r"(unknown|invalid|unsupported|unavailable) model|"
    r"model\W[^\n]{0,80}(not found|does not exist|not exist|unknown|unavailable|not supported|invalid))"
)

URL_RE = re.compile(r"https?://[^\s)\"'<>\]]+")
ISSUE_URL_RE = re.compile(r"/issues/\d+$")
PR_URL_RE = re.compile(r"/pulls?/\d+$")


def found_urls(text: str) -> tuple[list[str], list[str]]:
    """(pull request URLs, issue URLs) mentioned in provider output, sorted, unique."""
    urls = sorted({u.rstrip(".,;:") for u in URL_RE.findall(text)})
    return [u for u in urls if PR_URL_RE.search(u)], [u for u in urls if ISSUE_URL_RE.search(u)]


def generic_usage(text: str) -> Usage:
    """Token counts from free text: `"total_tokens": N`, Ollama's `--verbose` counts, or `N tokens`."""
    usage = Usage()
    prompt = re.findall(r"prompt eval count:\s*(\d+)", text)
    evals = re.findall(r"(?<!prompt )eval count:\s*(\d+)", text)
    if prompt or evals:
        usage.input_tokens = int(prompt[-1]) if prompt else None
        usage.output_tokens = int(evals[-1]) if evals else None
        return usage
    totals = re.findall(r'"(?:total_tokens|totalTokens)"\s*:\s*(\d+)', text)
    if totals:
        usage.total_tokens = int(totals[-1])
        return usage
    loose = re.findall(r"([\d,]+)\s+tokens\b", text)
    if loose:
        usage.total_tokens = int(loose[-1].replace(",", ""))
    return usage


class Provider:
    """Build an invocation for a prompt and a resolved runtime; parse what came back.

    Subclasses override `invocation` and `parse`; `run` (process with timeout, tee to the task log) is
    shared, and a provider that is not a process (HTTP) overrides `run` instead.
    """

    name = "provider"
    supports_result_file = True  # whether the agent can write KEYSTONE_TASK_RESULT
    max_turns: int | None = None  # passed to CLIs that have a turn limit
    stream_kind: str | None = None  # the JSONL event stream this CLI can print (providers/stream.py)
    stream: bool = False  # print it (set when tool calls are limited or a session must be resumed)
    resume_session: str | None = None  # continue this CLI session instead of starting one (modes/continuation.py)
    mcp: "McpPlan | None" = None  # the MCP servers of this run (providers/mcp.py); None: none configured
    # instructions added to the CLI's own system prompt (the coding subagent's rules): claude takes them as
    # `--append-system-prompt`; CLIs without such a flag get them in front of the prompt (`instructions`)
    system_prompt: str | None = None

    def instructions(self, prompt: str) -> str:
        """The prompt with `system_prompt` in front of it, for a CLI that has no system-prompt flag."""
        return combined_instructions(self.system_prompt, prompt) if self.system_prompt else prompt

    policy_file: str | None = None  # the policy.json its pre-tool hook reads (policy/render.py); None: no policy

    def transcript_paths(self, cwd: "Path", home: "Path") -> list["Path"]:
        """Files or directories the CLI writes its session transcript to while it works (the stall watchdog
        counts their changes as output)."""
        return []

    def invocation(self, prompt: str, runtime: "Runtime") -> Invocation:
        raise NotImplementedError

    def parse(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        """Fill usage / is_error / model_error / message / evidence of `result` from the output. The generic
        rule: any output on stdout is evidence."""
        result.usage = generic_usage(stdout + "\n" + stderr)
        result.evidence = bool(stdout.strip())
        result.answer = stdout

    def run(self, prompt: str, runtime: "Runtime", options: "RunOptions") -> ProviderResult:
        from keystone_agents.providers.process import run_process

        events = None
        if self.stream_kind and self.stream:
            from keystone_agents.providers.stream import EventStream

            events = EventStream(self.stream_kind, self.max_turns)
        try:
            inv = self.invocation(prompt, runtime)
            if options.cwd is not None and not options.watch:
                home = Path((options.env or {}).get("HOME") or Path.home())
                options.watch = self.transcript_paths(Path(options.cwd), home)
            if inv.env:
                options = dataclasses.replace(options, env={**(options.env or os.environ), **inv.env})
            if events is not None:
                options.on_stdout = events.feed
            proc: ProcessResult = run_process(inv.argv, inv.stdin, options)
        finally:
            if self.mcp is not None:
                self.mcp.cleanup()  # the run's MCP file may hold secrets: it lives as long as the run
        result = ProviderResult(
            exit_code=proc.exit_code,
            timed_out=proc.timed_out,
            duration_seconds=proc.duration_seconds,
            output=proc.stdout + proc.stderr,
            stalled=proc.stalled,
        )
        self.parse(proc.stdout, proc.stderr, result)
        if events is not None:
            result.tool_calls = events.executed_tool_calls
            result.session_id = result.session_id or events.session_id or ""
            if proc.stopped:
                result.stopped = proc.stopped
                result.reason = "max-turns"
                result.is_error = True
                result.evidence = False
                result.message = proc.stopped[:300]
        if not result.succeeded and not result.timed_out and not result.model_error:
            result.model_error = bool(MODEL_ERROR_RE.search(proc.stdout[-20000:] + proc.stderr[-20000:]))
        if not result.message:
            result.message = _last_line(proc.stderr) or _last_line(proc.stdout)
        return result


def _last_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""
