"""Semantic profiles and the resolution of provider, profile, model, fallback model and effort.

Resolution order (the seed's, with the original's defect fixed: task fields are honoured):
task field → stage setting (ingest | prioritize | execute) → `defaults` → profile catalog → built-ins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from keystone_agents.config import Config, ProviderProfile

PROVIDERS = ("claude", "gemini", "codex", "command", "openai")
STAGE_PROFILES = {"ingest": "fast", "prioritize": "fast", "execute": "medium"}
DEFAULT_PROVIDER = "claude"

# The seed's built-in catalog. Gemini and Codex consume only `model` today.
BUILTIN_PROFILES: dict[str, dict[str, ProviderProfile]] = {
    "embedding": {},
    "fast": {
        "claude": ProviderProfile(model="haiku", fallback_model="sonnet", effort="low"),
        "gemini": ProviderProfile(model="gemini-3-flash-preview"),
    },
    "medium": {
        "claude": ProviderProfile(model="sonnet", fallback_model="opus", effort="medium"),
        "gemini": ProviderProfile(model="auto-gemini-3"),
    },
    "max": {
        "claude": ProviderProfile(model="opus", effort="max"),
        "gemini": ProviderProfile(model="auto-gemini-3"),
    },
}


def profile_catalog(config: Config) -> dict[str, dict[str, ProviderProfile]]:
    """The built-in catalog with the config's profiles merged over it, key by key."""
    catalog = {name: dict(providers) for name, providers in BUILTIN_PROFILES.items()}
    for name, providers in config.profiles.items():
        merged = catalog.setdefault(name, {})
        for provider, override in providers.items():
            base = merged.get(provider, ProviderProfile())
            merged[provider] = ProviderProfile(
                model=override.model if override.model is not None else base.model,
                fallback_model=override.fallback_model if override.fallback_model is not None else base.fallback_model,
                effort=override.effort if override.effort is not None else base.effort,
            )
    return catalog


@dataclass(frozen=True)
class Runtime:
    provider: str
    profile: str | None
    model: str | None
    fallback_model: str | None
    effort: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "profile": self.profile,
            "model": self.model,
            "fallback_model": self.fallback_model,
            "effort": self.effort,
        }


def _first(*values: Any) -> Any:
    for value in values:
        if value not in (None, ""):
            return value
    return None


def resolve(config: Config, stage: str, task: Mapping[str, Any] | None = None) -> Runtime:
    """Resolve the runtime of `stage` (ingest | prioritize | execute) for an optional task."""
    task = task or {}
    settings = config.stage(stage)
    defaults = config.defaults
    provider = _first(task.get("provider"), settings.provider, defaults.provider, DEFAULT_PROVIDER)
    profile = _first(task.get("profile"), settings.profile, defaults.profile, STAGE_PROFILES.get(stage))
    from_profile = profile_catalog(config).get(profile or "", {}).get(provider, ProviderProfile())
    return Runtime(
        provider=provider,
        profile=profile,
        model=_first(task.get("model"), settings.model, defaults.model, from_profile.model),
        fallback_model=_first(
            task.get("fallback_model"), settings.fallback_model, defaults.fallback_model, from_profile.fallback_model
        ),
        effort=_first(task.get("effort"), settings.effort, defaults.effort, from_profile.effort),
    )
