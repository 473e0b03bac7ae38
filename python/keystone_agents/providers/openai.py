"""An OpenAI-compatible chat completions endpoint (Ollama's /v1, llama.cpp server, vLLM):
POST <baseUrl>/chat/completions {"model", "messages": [{"role": "user", "content": prompt}]}.

Runs in the loop's process (no child) through httpclient.py: timeouts, refused connections, 429 and 5xx are
retried with backoff and jitter within the task's timeout. The answer is written to the task log. Usage comes from
`usage.prompt_tokens` / `usage.completion_tokens`. HTTP 404 and 429, or an error naming the model, are
model errors (one retry with the fallback model).
"""

from __future__ import annotations

import time
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
        from keystone_agents.httpclient import Client, Unreachable

        if not runtime.model:
            raise ProviderError("provider 'openai' needs a model (task, stage, defaults or profile)")
        body = {"model": runtime.model, "messages": [{"role": "user", "content": prompt}]}
        headers = {"Content-Type": "application/json"}
        if self.api_key_file:
            try:
                key = Path(self.api_key_file).expanduser().read_text().strip()
            except OSError as exc:
                raise ProviderError(f"cannot read openaiProvider.apiKeyFile {self.api_key_file}: "
                                    f"{exc.strerror or exc}") from None
            headers["Authorization"] = f"Bearer {key}"
        started = time.monotonic()
        options.log_path.parent.mkdir(parents=True, exist_ok=True)
        result = ProviderResult(exit_code=None, timed_out=False, duration_seconds=0.0, output="")
        retries: list[str] = []
        # the task's timeout is the budget for the request and its retries (timeouts, refused connections,
        # 429 and 5xx, Retry-After honoured)
        client = Client(timeout=options.timeout, deadline=started + options.timeout, headers=headers,
                        on_retry=lambda url, attempt, why, delay: retries.append(
                            f"[keystone-agent] {why}; retrying in {delay:.1f}s (attempt {attempt + 1})"))
        try:
            response = client.request("POST", f"{self.base_url}/chat/completions", json=body)
            status = response.status_code
            if status == 200:
                payload = response.json()
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
            else:
                text = response.content.decode("utf-8", errors="replace")[:2000]
                result.exit_code = 1
                result.output = f"HTTP {status}: {text}"
                result.message = result.output[:300]
                result.model_error = status in (404, 429) or bool(MODEL_ERROR_RE.search(text))
        except Unreachable as exc:
            result.timed_out = "timed out" in str(exc) or "budget" in str(exc)
            result.exit_code = None if result.timed_out else 1
            result.output = f"request failed: {exc}"
            result.message = result.output[:300]
        except (ValueError, AttributeError) as exc:
            result.exit_code = 1
            result.output = f"malformed answer: {exc}"
            result.message = result.output[:300]
        finally:
            client.close()
        result.duration_seconds = time.monotonic() - started
        with open(options.log_path, "a", encoding="utf-8") as log:
            for line in retries:
                log.write(line + "\n")
            log.write(result.output + "\n")
        return result
