"""Helpers shared by the scheduler's tests (schedules and calendars)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """The scheduler's local zone is UTC unless a test says otherwise."""
    monkeypatch.setenv("TZ", "UTC")


def configure(home: Path, **keys) -> None:
    """Merge `keys` (camelCase JSON) into the agent's config.json."""
    path = home / ".config/keystone-agent/config.json"
    data = json.loads(path.read_text())
    data.update(keys)
    path.write_text(json.dumps(data, indent=2))


def tasks(home: Path) -> list[dict]:
    return yaml.safe_load((home / "TASKS.yaml").read_text())["tasks"] or []
