"""`provider: auto`: the first usable of claude → codex → gemini → a local model (`command` running
`ollama run {model}` with a pulled model) → `openai` with a reachable base URL.

Usable means: the CLI is on the PATH the providers get; for Ollama, `ollama list` names at least one model
(the first is used unless a model is configured); for `openai`, `openaiProvider.baseUrl` answers
`GET <baseUrl>/models` within two seconds. The loop resolves once per run that has work, before ingest, and
logs a `provider_resolved` event; `keystone-agent provider resolve` shows the same decision.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from keystone_agents.providers.base import ProviderError

AUTO = "auto"
CLI_ORDER = ("claude", "codex", "gemini")
OLLAMA_ARGV = ["ollama", "run", "{model}"]
STAGES = ("defaults", "ingest", "prioritize", "execute")


@dataclass
class Resolution:
    provider: str
    model: str | None = None  # set when the choice implies one (the pulled Ollama model)
    command_argv: list[str] | None = None  # set when `command` is chosen without commandProvider configured
    reason: str = ""
    tried: list[str] = field(default_factory=list)  # why each earlier candidate was not usable

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def uses_auto(config) -> bool:
    return any(config.stage(s).provider == AUTO for s in STAGES) or any(
        r.provider == AUTO for r in config.runtime_rules)


def _ollama_model(path: str | None) -> str | None:
    exe = shutil.which("ollama", path=path)
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip()]
    return rows[0] if out.returncode == 0 and rows else None


def _reachable(base_url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=timeout) as response:
            return 200 <= response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500  # it answered (401 without a key still means it is there)
    except (OSError, ValueError):
        return False


def resolve(config, path: str | None = None, timeout: float = 2.0) -> Resolution:
    """The first usable provider; raises ProviderError naming why each candidate was not."""
    tried = []
    for cli in CLI_ORDER:
        if shutil.which(cli, path=path):
            return Resolution(cli, reason=f"{cli} is on the PATH", tried=tried)
        tried.append(f"{cli}: not on the PATH")
    model = _ollama_model(path)
    if model:
        argv = None if config.command_provider else list(OLLAMA_ARGV)
        return Resolution("command", model=model, command_argv=argv, reason=f"ollama has model {model}",
                          tried=tried)
    tried.append("command: no ollama with a pulled model")
    if config.openai_provider and _reachable(config.openai_provider.base_url, timeout):
        return Resolution("openai", reason=f"{config.openai_provider.base_url} answers", tried=tried)
    tried.append("openai: " + ("no openaiProvider.baseUrl configured" if not config.openai_provider
                               else f"{config.openai_provider.base_url} does not answer"))
    raise ProviderError("provider auto: no usable provider (" + "; ".join(tried) + ")")


def apply(config, resolution: Resolution):
    """The configuration with every `auto` replaced by the resolved provider (and its model/argv)."""
    from keystone_agents.config import CommandProviderSettings

    changes = {}
    for stage in STAGES:
        settings = config.stage(stage)
        if settings.provider == AUTO:
            model = settings.model or resolution.model
            changes[stage] = dataclasses.replace(settings, provider=resolution.provider, model=model)
    rules = [dataclasses.replace(r, provider=resolution.provider) if r.provider == AUTO else r
             for r in config.runtime_rules]
    if rules != config.runtime_rules:
        changes["runtime_rules"] = rules
    if resolution.command_argv and not config.command_provider:
        changes["command_provider"] = CommandProviderSettings(argv=list(resolution.command_argv))
    return dataclasses.replace(config, **changes)
