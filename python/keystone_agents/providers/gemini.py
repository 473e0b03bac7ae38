"""Gemini CLI: `gemini --prompt <prompt> --yolo [-m M]` (the seed's argv; fallback model and effort are not
passed, the CLI has no equivalent).

The default text output has no usage. When the output is the CLI's JSON (`--output-format json`, e.g. set
by a wrapper), tokens come from `stats.models.<model>.tokens.{prompt,candidates,total}` and errors from
`error.{type,message,code}`.
"""

from __future__ import annotations

from keystone_agents.providers.base import MODEL_ERROR_RE, Invocation, Provider, ProviderResult, Usage
from keystone_agents.providers.claude import last_json_object


class GeminiProvider(Provider):
    name = "gemini"

    def invocation(self, prompt, runtime) -> Invocation:
        argv = ["gemini", "--prompt", prompt, "--yolo"]
        if runtime.model:
            argv += ["-m", runtime.model]
        return Invocation(argv)

    def parse(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        data = last_json_object(stdout)
        if data is None or not ("stats" in data or "error" in data or "response" in data):
            super().parse(stdout, stderr, result)
            return
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
