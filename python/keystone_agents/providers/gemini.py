"""Gemini CLI: `gemini --prompt=<prompt> --yolo [--allowed-mcp-server-names=NAME]… --output-format json
[--resume=SESSION] [--model=M]` (the seed's argv plus the JSON output and the configured MCP servers; fallback
model and effort are not passed, the CLI has no equivalent). Values are attached with `=` (yargs reads
`--key=value` as the value whatever it starts with), so neither a prompt nor a model can become an option. A
prompt too long for one argument goes to stdin, and `--prompt` carries a one-line note (the CLI documents -p as
"appended to input on stdin").

One system settings file per run, named by `GEMINI_CLI_SYSTEM_SETTINGS_PATH` ("System settings … override all
other settings files"), carries the MCP servers (providers/mcp.py) and, with a tool-call limit,
`model.maxSessionTurns`. With a tool-call limit, or in autonomous mode, `--output-format stream-json` (init,
message, tool_use, tool_result, error, result events): the runtime also counts `tool_use` events as they stream
and stops the run at the limit. A run's own system prompt (the coding subagent's) goes in front of the prompt: the CLI has no
flag for it.

The JSON output is one object: `response` (the final answer), `stats` (tokens from
`stats.models.<model>.tokens.{prompt,candidates,total}`) and, on failure, `error.{type,message,code}`.
Evidence that it ran the task: a non-empty `response` with `stats` and no `error`. Exit code 53 means the
turn limit stopped it. Chats are saved under `~/.gemini/tmp/<sha256 of the project dir>/chats/` (watched by
the stall watchdog).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from keystone_agents.providers.base import (MODEL_ERROR_RE, Invocation, Provider, ProviderResult, Usage, attached,
                                            fits_in_argument)
from keystone_agents.providers.claude import last_json_object


SETTINGS_ENV_GEMINI = "GEMINI_CLI_SYSTEM_SETTINGS_PATH"  # the system settings layer (overrides the others)
DEFAULTS_ENV_GEMINI = "GEMINI_CLI_SYSTEM_DEFAULTS_PATH"  # the system defaults layer (the lowest)
STDIN_NOTE = "(The task is the text above, given on stdin. Carry it out.)"


class GeminiProvider(Provider):
    name = "gemini"
    stream_kind = "gemini"

    def invocation(self, prompt, runtime) -> Invocation:
        stdin = None
        prompt = self.instructions(prompt)  # gemini has no flag adding to its system prompt
        if not fits_in_argument(prompt):
            # "-p/--prompt: ... Appended to input on stdin (if any)": the task goes on stdin, -p says so
            stdin, prompt = prompt, STDIN_NOTE
        env: dict[str, str] = {}
        if self.policy_file:
            # the rendered system settings (BeforeTool hook; they override the user's and the project's); the
            # run's MCP servers move to the system *defaults* layer. --yolo is deprecated: --approval-mode=yolo
            from keystone_agents.policy.render import GEMINI

            argv = ["gemini", attached("--prompt", prompt), attached("--approval-mode", "yolo")]
            env[SETTINGS_ENV_GEMINI] = str(Path(self.policy_file).with_name(GEMINI))
        else:
            argv = ["gemini", attached("--prompt", prompt), "--yolo"]
        if self.mcp is not None:
            from keystone_agents.providers.mcp import gemini_settings

            settings = gemini_settings(self.mcp.servers)
            if self.max_turns:
                settings["model"] = {"maxSessionTurns": self.max_turns}
            path = self.mcp.write(settings)
            env[DEFAULTS_ENV_GEMINI if self.policy_file else SETTINGS_ENV_GEMINI] = str(path)
            argv += [attached("--allowed-mcp-server-names", server.name) for server in self.mcp.servers]
        argv += ["--output-format", "stream-json" if self.stream else "json"]
        if self.resume_session:
            argv.append(attached("--resume", self.resume_session))
        if runtime.model:
            argv.append(attached("--model", runtime.model))
        return Invocation(argv, stdin=stdin, env=env)

    def run(self, prompt, runtime, options):
        if self.max_turns and self.mcp is None:
            # the settings file for model.maxSessionTurns lives as long as the run, like an MCP one
            from keystone_agents.providers.mcp import McpPlan

            self.mcp = McpPlan([], options.log_path.with_name(options.log_path.name + ".gemini-settings.json"))
        return super().run(prompt, runtime, options)

    def transcript_paths(self, cwd: Path, home: Path) -> list[Path]:
        project = home / ".gemini" / "tmp" / hashlib.sha256(str(cwd).encode()).hexdigest()
        return [project, project / "chats"]

    def parse(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        if result.exit_code == 53:
            result.reason = "max-turns"
        if self.stream:
            self._parse_stream(stdout, stderr, result)
            return
        data = last_json_object(stdout)
        if data is None or not ("stats" in data or "error" in data or "response" in data):
            super().parse(stdout, stderr, result)
            result.evidence = False
            return
        response = data.get("response")
        result.evidence = (isinstance(response, str) and bool(response.strip()) and isinstance(data.get("stats"), dict)
                           and not data.get("error"))
        result.answer = response if isinstance(response, str) else ""
        if isinstance(response, str) and response.strip():
            result.message = response.strip().splitlines()[-1][:300]
        prompt = candidates = total = 0
        models = ((data.get("stats") or {}).get("models") or {}) if isinstance(data.get("stats"), dict) else {}
        for stats in models.values():
            tokens = (stats or {}).get("tokens") or {}
            prompt += int(tokens.get("prompt") or 0)
            candidates += int(tokens.get("candidates") or 0)
            total += int(tokens.get("total") or 0)
        if models:
            result.usage = Usage(input_tokens=prompt, output_tokens=candidates, total_tokens=total or None)
        error = data.get("error")
        if isinstance(error, dict):
            result.is_error = True
            result.message = str(error.get("message") or error.get("type") or "error")[:300]
            result.model_error = bool(MODEL_ERROR_RE.search(result.message)) or error.get("code") in (404, 429)

    def _parse_stream(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        """stream-json: assistant `message` chunks make the answer; `result` carries status and stats."""
        from keystone_agents.providers.codex import events

        answer, final, errors = [], None, []
        for event in events(stdout):
            kind = event["type"]
            if kind == "init" and isinstance(event.get("session_id"), str):
                result.session_id = event["session_id"]
            elif kind == "message" and event.get("role") == "assistant" and isinstance(event.get("content"), str):
                answer.append(event["content"])
            elif kind == "error":
                errors.append(str(event.get("message") or event.get("severity") or "error"))
            elif kind == "result":
                final = event
        text = "".join(answer)
        result.answer = text
        if text.strip():
            result.message = text.strip().splitlines()[-1][:300]
        if final is None:
            super().parse(stdout, stderr, result)
            result.answer, result.evidence = text, False
            return
        stats = final.get("stats") if isinstance(final.get("stats"), dict) else {}
        if stats:
            result.usage = Usage(input_tokens=stats.get("input_tokens"), output_tokens=stats.get("output_tokens"),
                                 total_tokens=stats.get("total_tokens"))
        if final.get("status") != "success":
            error = final.get("error") if isinstance(final.get("error"), dict) else {}
            result.is_error = True
            result.message = str(error.get("message") or (errors[-1] if errors else "") or final.get("status"))[:300]
            result.model_error = bool(MODEL_ERROR_RE.search(result.message))
        result.evidence = final.get("status") == "success" and bool(text.strip())
