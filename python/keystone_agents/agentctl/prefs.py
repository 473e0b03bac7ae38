"""The admin's interactive preferences per agent (and per agent within a project): preferred host, provider,
model and fallback model. They feed `agentctl show` and interactive sessions.

Stored as JSON at $XDG_CONFIG_HOME/keystone/agentctl-prefs.json (default ~/.config/...), written atomically:
    {"version": 1, "agents": {"drago": {"host": ..., "provider": ...}},
     "projects": {"<slug>": {"drago": {...}}}}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from keystone_agents.atomic import write_atomic
from keystone_agents.problems import Problem, ValidationFailed

FIELDS = ("host", "provider", "model", "fallbackModel")
PROVIDERS = ("claude", "codex", "gemini")


@dataclass(frozen=True)
class Prefs:
    host: str | None = None
    provider: str | None = None
    model: str | None = None
    fallbackModel: str | None = None  # noqa: N815 - the JSON key, shown as is

    def over(self, base: "Prefs") -> "Prefs":
        """These preferences with unset fields taken from `base`."""
        return Prefs(**{k: getattr(self, k) if getattr(self, k) is not None else getattr(base, k) for k in FIELDS})

    def as_dict(self) -> dict:
        return asdict(self)


def prefs_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path(os.environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "keystone" / "agentctl-prefs.json"


def _load(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": 1, "agents": {}, "projects": {}}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed([Problem(str(path), exc.lineno, "", f"not valid JSON: {exc.msg}")]) from None
    if not isinstance(data, dict) or not isinstance(data.get("agents", {}), dict) or not isinstance(data.get("projects", {}), dict):
        raise ValidationFailed([Problem(str(path), 1, "", "expected an object with `agents` and `projects` objects")])
    data.setdefault("version", 1)
    data.setdefault("agents", {})
    data.setdefault("projects", {})
    return data


def _entry(raw: object) -> Prefs:
    if not isinstance(raw, dict):
        return Prefs()
    return Prefs(**{k: raw.get(k) if isinstance(raw.get(k), str) else None for k in FIELDS})


class PrefsStore:
    def __init__(self, path: Path | None = None):
        self.path = path or prefs_path()

    def get(self, agent: str, project: str | None = None) -> Prefs:
        """Effective preferences: the project's entry for the agent over the agent's own."""
        data = _load(self.path)
        own = _entry(data["agents"].get(agent))
        if project:
            return _entry(data["projects"].get(project, {}).get(agent)).over(own)
        return own

    def set(self, agent: str, project: str | None = None, **values: str | None) -> Prefs:
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown preference(s): {', '.join(sorted(unknown))}")
        provider = values.get("provider")
        if provider is not None and provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
        data = _load(self.path)
        table = data["projects"].setdefault(project, {}) if project else data["agents"]
        current = {k: v for k, v in (table.get(agent) or {}).items() if k in FIELDS}
        current.update({k: v for k, v in values.items() if v is not None})
        table[agent] = current
        self._save(data)
        return self.get(agent, project)

    def clear(self, agent: str, project: str | None = None) -> bool:
        data = _load(self.path)
        if project:
            table = data["projects"].get(project, {})
            removed = table.pop(agent, None) is not None
            if not table:
                data["projects"].pop(project, None)
        else:
            removed = data["agents"].pop(agent, None) is not None
        if removed:
            self._save(data)
        return removed

    def _save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)
