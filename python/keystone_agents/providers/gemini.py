"""Gemini CLI: `gemini --prompt=<prompt> --yolo [--allowed-mcp-server-names=NAME]… --output-format json
[--model=M]` (the seed's argv plus the JSON output and the configured MCP servers, whose settings file is named by
`GEMINI_CLI_SYSTEM_SETTINGS_PATH`, see providers/mcp.py; fallback model and effort are not passed, the CLI has no
equivalent). Values are attached with
`=` (yargs reads `--key=value` as the value whatever it starts with), so neither a prompt nor a model can
become an option. A prompt too long for one argument goes to stdin, and `--prompt` carries a one-line note
(the CLI documents -p as "appended to input on stdin").

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

    def invocation(self, prompt, runtime) -> Invocation:
        stdin = None
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

            path = self.mcp.write(gemini_settings(self.mcp.servers))
            env[DEFAULTS_ENV_GEMINI if self.policy_file else SETTINGS_ENV_GEMINI] = str(path)
            argv += [attached("--allowed-mcp-server-names", server.name) for server in self.mcp.servers]
        argv += ["--output-format", "json"]
        if runtime.model:
            argv.append(attached("--model", runtime.model))
        return Invocation(argv, stdin=stdin, env=env)

    def transcript_paths(self, cwd: Path, home: Path) -> list[Path]:
        project = home / ".gemini" / "tmp" / hashlib.sha256(str(cwd).encode()).hexdigest()
        return [project, project / "chats"]

    def parse(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        if result.exit_code == 53:
            result.reason = "max-turns"
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
