"""Claude Code: `claude --print --output-format json --dangerously-skip-permissions [--resume=SESSION]
[--model=M] [--fallback-model=F] [--effort=E] [--max-turns=N] -- <prompt>` (the seed's argv, plus the turn
limit when `exec.maxIterations` (alias `maxTurns`) is set) and the configured MCP servers,
`--mcp-config=FILE --strict-mcp-config` right after the output format (providers/mcp.py; `--mcp-config` takes
several values, so another flag always follows it). Values are attached with `=` and the prompt follows `--`
(Commander, the CLI's parser, reads `--opt=value` as that option's value and everything after `--` as
positionals), so no model name or prompt can be read as an option. A prompt too long for one argument is
written to stdin instead (the CLI reference's `cat file | claude -p`). With a tool-call limit, or in
autonomous mode, `--output-format stream-json --verbose` replaces `json`: the runtime counts `tool_use`
blocks as they stream (providers/stream.py) and the last line is the same result object; `--resume`
continues a session (modes/continuation.py). `--append-system-prompt=TEXT` follows the permission flags when the run has a
system prompt of its own (the coding subagent's; one too long for an argument goes in front of the prompt).

Evidence that it ran the task: a parsable JSON result with `is_error: false` and non-zero
`usage.output_tokens`. `num_turns` is the number of agentic turns; `subtype: error_max_turns` means the
turn limit stopped it. While it works it appends to its transcript under
`~/.claude/projects/<cwd with / and . as ->/` (watched by the stall watchdog; stdout stays silent until the end).

The JSON result carries `is_error`, `result`, `total_cost_usd` and `usage` (`input_tokens`,
`cache_creation_input_tokens`, `cache_read_input_tokens`, `output_tokens`); input tokens are the sum of
the three input counts.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from keystone_agents.providers.base import (MODEL_ERROR_RE, Invocation, Provider, ProviderResult, Usage, attached,
                                            fits_in_argument)


def last_json_object(text: str) -> dict | None:
    """The JSON object printed on stdout: the whole text, else the last line that is one."""
    text = text.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def last_result_event(text: str) -> dict | None:
    """The `{"type": "result", …}` line of a stream-json output (None: the stream ended without one)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and '"result"' in line:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and value.get("type") == "result":
                return value
    return None


class ClaudeProvider(Provider):
    name = "claude"
    stream_kind = "claude"

    def __init__(self, max_turns: int | None = None, stream: bool = False):
        self.max_turns = max_turns
        self.stream = stream

    def transcript_paths(self, cwd: Path, home: Path) -> list[Path]:
        base = Path(os.environ.get("CLAUDE_CONFIG_DIR") or home / ".claude")
        return [base / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(cwd))]

    def invocation(self, prompt, runtime) -> Invocation:
        # stream-json needs --verbose with --print; its last line is the object `json` prints alone
        output = ["--output-format", "stream-json", "--verbose"] if self.stream else ["--output-format", "json"]
        argv = ["claude", "--print", *output]
        if self.mcp is not None:
            from keystone_agents.providers.mcp import claude_document

            # --mcp-config takes several values: another flag must follow its file, never the prompt
            argv += [attached("--mcp-config", str(self.mcp.write(claude_document(self.mcp.servers)))),
                     "--strict-mcp-config"]
        if self.policy_file:
            # the rendered settings: a PreToolUse hook on every tool and deny rules, in dontAsk mode (a tool the
            # settings do not allow is refused, never prompted for); both hold in every permission mode
            from keystone_agents.policy.render import CLAUDE

            argv += [attached("--settings", str(Path(self.policy_file).with_name(CLAUDE))),
                     attached("--permission-mode", "dontAsk")]
        else:
            argv += ["--dangerously-skip-permissions"]
        if self.resume_session:
            argv.append(attached("--resume", self.resume_session))
        if self.system_prompt:
            if fits_in_argument(self.system_prompt):
                argv.append(attached("--append-system-prompt", self.system_prompt))
            else:  # too long for one argument: the system prompt goes with the prompt (on stdin, see below)
                prompt = self.instructions(prompt)
        if runtime.model:
            argv.append(attached("--model", runtime.model))
        if runtime.fallback_model and runtime.fallback_model != runtime.model:
            argv.append(attached("--fallback-model", runtime.fallback_model))
        if runtime.effort:
            argv.append(attached("--effort", runtime.effort))
        if self.max_turns:
            argv.append(attached("--max-turns", str(self.max_turns)))
        if fits_in_argument(prompt):
            return Invocation(argv + ["--", prompt])  # after `--` nothing is an option
        return Invocation(argv, stdin=prompt)  # `claude -p` reads the prompt from stdin when none is given

    def parse(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        data = last_result_event(stdout) if self.stream else last_json_object(stdout)
        if data is None:
            super().parse(stdout, stderr, result)
            result.evidence = False  # --output-format json promised a result object: text proves nothing
            return
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        inputs = [usage.get(k) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
        inputs = [int(v) for v in inputs if isinstance(v, (int, float))]
        output = usage.get("output_tokens")
        cost = data.get("total_cost_usd", data.get("cost_usd"))
        result.usage = Usage(
            input_tokens=sum(inputs) if inputs else None,
            output_tokens=int(output) if isinstance(output, (int, float)) else None,
            cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
        )
        result.is_error = bool(data.get("is_error")) or data.get("subtype") not in (None, "success")
        turns = data.get("num_turns")
        result.turns = int(turns) if isinstance(turns, (int, float)) else None
        if data.get("subtype") == "error_max_turns":
            result.reason = "max-turns"
        result.evidence = (data.get("is_error") is False and not result.is_error
                           and (result.usage.output_tokens or 0) > 0)
        text = data.get("result") if isinstance(data.get("result"), str) else ""
        result.answer = text
        if isinstance(data.get("session_id"), str):
            result.session_id = data["session_id"]
        result.message = text.strip().splitlines()[-1][:300] if text.strip() else ""
        if result.is_error:
            result.message = (text or str(data.get("subtype") or "error"))[:300]
            result.model_error = bool(MODEL_ERROR_RE.search(text + "\n" + stderr[-5000:]))
