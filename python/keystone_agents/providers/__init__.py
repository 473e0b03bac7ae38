"""Model providers behind one small interface: build the invocation, parse the output.

`get(name, config)` → a Provider. Hosted CLIs (claude, gemini, codex) get their argv exactly as the seed
specifies; `command` pipes the prompt to any CLI on stdin; `openai` talks to an OpenAI-compatible HTTP API.
"""

from __future__ import annotations

from keystone_agents.providers.base import Invocation, Provider, ProviderError, ProviderResult, Usage

__all__ = ["Invocation", "Provider", "ProviderError", "ProviderResult", "Usage", "get", "NAMES"]

NAMES = ("claude", "gemini", "codex", "command", "openai")


def get(name: str, config) -> Provider:
    provider = _get(name, config)
    # maxIterations (or the deprecated maxTurns) limits tool calls; autonomous mode needs the session id:
    # both read the CLI's event stream while it runs (providers/stream.py)
    provider.max_turns = getattr(config, "max_iterations", getattr(config, "max_turns", None))
    mode = getattr(getattr(config, "exec", None), "mode", "timer")
    provider.stream = bool(provider.stream_kind) and (provider.max_turns is not None or mode == "autonomous"
                                                      or (name == "gemini" and _policy(config)))
    return provider


def _policy(config) -> bool:
    """A policy is in effect: an execution blocked on an approval is resumed after it (policy/outcome.py), and
    gemini names its session only in the stream (`init`), not in `--output-format json`."""
    try:
        from keystone_agents.policy.outcome import enabled

        return enabled(config)
    except AttributeError:  # a partial config (tests, dry runs) has no policy
        return False


def _get(name: str, config) -> Provider:
    if name == "claude":
        from keystone_agents.providers.claude import ClaudeProvider

        return ClaudeProvider()
    if name == "gemini":
        from keystone_agents.providers.gemini import GeminiProvider

        return GeminiProvider()
    if name == "codex":
        from keystone_agents.providers.codex import CodexProvider

        settings = getattr(config, "codex_provider", None)
        return CodexProvider(settings.local_provider if settings else None)
    if name == "command":
        from keystone_agents.providers.command import CommandProvider

        return CommandProvider(config.command_provider)
    if name == "openai":
        from keystone_agents.providers.openai import OpenAIProvider

        return OpenAIProvider(config.openai_provider)
    raise ProviderError(f"unsupported provider {name!r}; expected one of: {', '.join(NAMES)}")
