"""Codex CLI: `codex exec --json --full-auto [--oss --local-provider=P] [--config=mcp_servers.…]… [--model=M]
[resume THREAD_ID] -- <prompt>` (the seed's argv plus `--json`; `--oss` when codexProvider.localProvider names a
local model server; the configured MCP servers as `-c/--config` overrides, see providers/mcp.py; fallback model
and effort are not passed; `resume` continues a thread in autonomous mode). The model is attached with `=` and
the prompt follows `--` (clap reads `--model=value` as the value, and nothing after `--` as an option); a prompt
too long for one argument goes to stdin with `-` as the PROMPT argument ("if `-` is used, instructions are read
from stdin"). A run with a system prompt of its own (the coding subagent's) gets it in front of the
prompt: codex has no flag that adds to its system prompt.

With `--json`, stdout is JSON Lines, one event per line: `thread.started`, `turn.started`, `item.started` /
`item.updated` / `item.completed` (`item.type` `agent_message` carries the answer in `item.text`),
`turn.completed` with `usage.{input_tokens, cached_input_tokens, output_tokens}`, `turn.failed` with
`error.message`, and `error`. Evidence that it ran the task: at least one `turn.completed` and no
`turn.failed`. Input tokens include the cached ones. Older output without events falls back to the human
mode's `tokens used: N` line (usage only, no evidence). Sessions are also written to
`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl` (watched by the stall watchdog).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

from keystone_agents.providers.base import (MODEL_ERROR_RE, Invocation, Provider, ProviderResult, Usage, attached,
                                            fits_in_argument)

TOKENS_RE = re.compile(r"tokens used\s*:?\s*\n?\s*([\d,]+)", re.IGNORECASE)


def events(stdout: str) -> list[dict]:
    found = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            found.append(value)
    return found


def _hook_program(policy_file: str) -> str:
    """The keystone-agent the rendered settings name (the same one for every CLI)."""
    from keystone_agents.policy.render import CLAUDE

    try:
        command = json.loads((Path(policy_file).with_name(CLAUDE)).read_text(encoding="utf-8"))[
            "hooks"]["PreToolUse"][0]["hooks"][0]["command"]
        import shlex

        return shlex.split(command)[0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "keystone-agent"


class CodexProvider(Provider):
    name = "codex"
    stream_kind = "codex"

    def __init__(self, local_provider: str | None = None):
        self.local_provider = local_provider  # codexProvider.localProvider: --oss against ollama/lmstudio

    def invocation(self, prompt, runtime) -> Invocation:
        argv = ["codex", "exec", "--json", "--full-auto"]
        prompt = self.instructions(prompt)  # codex has no flag adding to its system prompt
        if self.local_provider:
            argv += ["--oss", attached("--local-provider", self.local_provider)]
        env: dict[str, str] = {}
        if self.mcp is not None:
            from keystone_agents.providers.mcp import codex_overrides

            overrides, env = codex_overrides(self.mcp.servers)
            argv += overrides
        if self.policy_file:  # the PreToolUse hook (codex has no settings-file flag: -c overrides)
            from keystone_agents.policy.render import codex_overrides as policy_overrides

            argv += policy_overrides(self.policy_file, _hook_program(self.policy_file))
        if runtime.model:
            argv.append(attached("--model", runtime.model))
        if self.resume_session:  # "only the conversation context is preserved; you must still provide flags"
            argv += ["resume", self.resume_session]
        if fits_in_argument(prompt):
            return Invocation(argv + ["--", prompt], env=env)  # after `--` nothing is an option (clap)
        return Invocation(argv + ["-"], stdin=prompt, env=env)  # `codex exec -`: the instructions are read from stdin

    def transcript_paths(self, cwd: Path, home: Path) -> list[Path]:
        base = Path(os.environ.get("CODEX_HOME") or home / ".codex") / "sessions"
        today = dt.date.today()
        return [base / day.strftime("%Y/%m/%d") for day in (today, today - dt.timedelta(days=1))]

    def parse(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        stream = events(stdout)
        if not stream:
            found = TOKENS_RE.findall(stderr + "\n" + stdout)
            if found:
                result.usage = Usage(total_tokens=int(found[-1].replace(",", "")))
            else:
                super().parse(stdout, stderr, result)
            result.evidence = False
            return
        inputs = outputs = turns = 0
        failure = ""
        answer = ""
        for event in stream:
            kind = event["type"]
            if kind == "thread.started" and isinstance(event.get("thread_id"), str):
                result.session_id = event["thread_id"]
            if kind == "turn.completed":
                turns += 1
                usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
                inputs += int(usage.get("input_tokens") or 0)
                outputs += int(usage.get("output_tokens") or 0)
            elif kind == "turn.failed":
                error = event.get("error") if isinstance(event.get("error"), dict) else {}
                failure = str(error.get("message") or "turn failed")
            elif kind == "error" and not failure:
                failure = str(event.get("message") or "error")
            elif kind == "item.completed":
                item = event.get("item") if isinstance(event.get("item"), dict) else {}
                if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                    answer = item["text"]
        result.usage = Usage(input_tokens=inputs, output_tokens=outputs) if turns else Usage()
        result.turns = turns or None
        result.evidence = turns > 0 and not failure
        if failure:
            result.is_error = True
            result.message = failure[:300]
            result.model_error = bool(MODEL_ERROR_RE.search(failure))
        result.answer = answer
        if not failure and answer.strip():
            result.message = answer.strip().splitlines()[-1][:300]
