"""The generic `command` provider: any CLI that reads the prompt on stdin (`ollama run <model>`, `llm`,
a script). The argv comes from the config's `commandProvider.argv`; `{model}` in it is replaced by the
resolved model. Token counts are read from Ollama's `--verbose` lines or a `total_tokens` JSON field.
The prompt is written to stdin, which is then closed (EOF). Evidence that it ran the task: non-empty stdout.
"""

from __future__ import annotations

from keystone_agents.providers.base import Invocation, Provider, ProviderError


class CommandProvider(Provider):
    name = "command"

    def __init__(self, settings):
        if settings is None or not settings.argv:
            raise ProviderError("provider 'command' needs commandProvider.argv in the configuration")
        self.argv = list(settings.argv)

    def invocation(self, prompt, runtime) -> Invocation:
        argv = []
        for arg in self.argv:
            if "{model}" in arg:
                if not runtime.model:
                    raise ProviderError("commandProvider.argv uses {model} but no model is resolved")
                arg = arg.replace("{model}", runtime.model)
            argv.append(arg)
        return Invocation(argv, stdin=prompt)
