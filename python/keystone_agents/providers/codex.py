"""Codex CLI: `codex exec --full-auto [-m M] <prompt>` (the seed's argv; fallback model and effort are not
passed). In its human output mode `codex exec` ends with a `tokens used` line (`tokens used: 1,234`, or
`tokens used` followed by the number on the next line in newer versions) — the total only.
"""

from __future__ import annotations

import re

from keystone_agents.providers.base import Invocation, Provider, ProviderResult, Usage

TOKENS_RE = re.compile(r"tokens used\s*:?\s*\n?\s*([\d,]+)", re.IGNORECASE)


class CodexProvider(Provider):
    name = "codex"

    def invocation(self, prompt, runtime) -> Invocation:
        argv = ["codex", "exec", "--full-auto"]
        if runtime.model:
            argv += ["-m", runtime.model]
        return Invocation(argv + [prompt])

    def parse(self, stdout: str, stderr: str, result: ProviderResult) -> None:
        found = TOKENS_RE.findall(stderr + "\n" + stdout)
        if found:
            result.usage = Usage(total_tokens=int(found[-1].replace(",", "")))
        else:
            super().parse(stdout, stderr, result)
