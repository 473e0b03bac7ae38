"""An OpenAI-compatible chat completions endpoint (Ollama's /v1, llama.cpp server, vLLM):
POST <baseUrl>/chat/completions {"model", "messages": [{"role": "user", "content": prompt}]}.

Runs in the loop's process (no child); the answer is written to the task log. Usage comes from
`usage.prompt_tokens` / `usage.completion_tokens`. HTTP 404 and 429, or an error naming the model, are
model errors (one retry with the fallback model).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from keystone_agents.providers.base import MODEL_ERROR_RE, Provider, ProviderError, ProviderResult, Usage


class OpenAIProvider(Provider):
    name = "openai"
    supports_result_file = False

    def __init__(self, settings):
        if settings is None:
            raise ProviderError("provider 'openai' needs openaiProvider.baseUrl in the configuration")
        self.base_url = settings.base_url.rstrip("/")
        self.api_key_file = settings.api_key_file

    def invocation(self, prompt, runtime):  # not a process; shown in dry runs
        from keystone_agents.providers.base import Invocation

        return Invocation(["POST", f"{self.base_url}/chat/completions", f"model={runtime.model or ''}"], stdin=prompt)

    def run(self, prompt, runtime, options) -> ProviderResult:
        if not runtime.model:
            raise ProviderError("provider 'openai' needs a model (task, stage, defaults or profile)")
        body = json.dumps({"model": runtime.model, "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key_file:
            key = Path(self.api_key_file).expanduser().read_text().strip()
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
        started = time.monotonic()
        options.log_path.parent.mkdir(parents=True, exist_ok=True)
        result = ProviderResult(exit_code=None, timed_out=False, duration_seconds=0.0, output="")
        try:
            with urllib.request.urlopen(request, timeout=options.timeout) as response:
                payload = json.loads(response.read().decode("utf-8", errors="replace"))
            content = ((payload.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
            usage = payload.get("usage") or {}
            result.usage = Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                total_tokens=usage.get("total_tokens"),
            )
            result.exit_code = 0
            result.output = content
            result.evidence = bool(content.strip())
            result.answer = content
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", errors="replace")[:2000]
            result.exit_code = 1
            result.output = f"HTTP {exc.code}: {text}"
            result.message = result.output[:300]
            result.model_error = exc.code in (404, 429) or bool(MODEL_ERROR_RE.search(text))
        except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            result.timed_out = isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError)
            result.exit_code = None if result.timed_out else 1
            result.output = f"request failed: {reason}"
            result.message = result.output[:300]
        result.duration_seconds = time.monotonic() - started
        with open(options.log_path, "a", encoding="utf-8") as log:
            log.write(result.output + "\n")
        return result
