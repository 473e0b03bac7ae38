"""Where the shipped templates are: inside the installed wheel, or the repository's templates/ in a checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def templates_dir() -> Path:
    packaged = Path(str(resources.files("keystone_agents"))) / "templates"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "templates"  # editable install: python/keystone_agents
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("keystone_agents templates not found (broken installation?)")
