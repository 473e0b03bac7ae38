"""Execution modes (docs/exec-modes.md): what each mode requires of the configuration, and the mode-specific
steps of the loop — autonomous continuation (continuation.py), the proactive briefing (briefing.py) and the
tick's end (tick.py). The rule for "a local provider" is defined here once; the NixOS module's assertion
mirrors it and a parity test runs both on the same cases."""

from __future__ import annotations

import re

from keystone_agents.problems import Problem

LOOPBACK_URL = re.compile(r"https?://(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?(/.*)?")
CYCLED_MODES = ("proactive", "tick")


def local_provider_problem(config) -> str | None:
    """Why the execute stage's provider is not local (None: it is). Local: `command` (ollama run, llama.cpp),
    `openai` with a loopback base URL, `codex` with codexProvider.localProvider (`--oss`). Hosted CLIs (claude,
    gemini, codex without a local provider) and `auto` are refused."""
    from keystone_agents.profiles import DEFAULT_PROVIDER

    provider = config.execute.provider or config.defaults.provider or DEFAULT_PROVIDER
    if provider == "command":
        return None
    if provider == "openai":
        url = config.openai_provider.base_url if config.openai_provider else ""
        if LOOPBACK_URL.fullmatch(url or ""):
            return None
        return ("provider openai needs a loopback openaiProvider.baseUrl (http://127.0.0.1:PORT/v1, "
                "http://localhost:PORT/v1)")
    if provider == "codex":
        if config.codex_provider and config.codex_provider.local_provider:
            return None
        return "provider codex needs codexProvider.localProvider (ollama or lmstudio: codex --oss)"
    return (f"provider {provider} is hosted; tick needs a local one: command (e.g. ollama run {{model}}), "
            "openai with a loopback baseUrl, or codex with codexProvider.localProvider")


def config_problems(config, file: str) -> list[Problem]:
    """What the mode needs and the configuration lacks (the schema checks thinkInterval already)."""
    problems = []
    mode = config.exec.mode
    if mode in CYCLED_MODES and not config.exec.think_interval:
        problems.append(Problem(file, None, "exec.thinkInterval", f"exec.mode {mode} needs exec.thinkInterval"))
    if mode == "tick":
        why = local_provider_problem(config)
        if why:
            problems.append(Problem(file, None, "execute.provider", f"exec.mode tick needs a local provider: {why}"))
    if config.exec.watch_prefixes and config.coordination.backend == "none":
        problems.append(Problem(file, None, "exec.watchPrefixes",
                                "exec.watchPrefixes needs the coordination bus, where shared state lives: set "
                                "coordination.backend to local or postgresql, or remove exec.watchPrefixes"))
    return problems
