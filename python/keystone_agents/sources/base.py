"""The source interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class SourceFailed(Exception):
    """A source could not produce data; `excerpt` holds the first bytes of what it printed."""

    def __init__(self, reason: str, excerpt: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.excerpt = excerpt


@dataclass
class FetchResult:
    name: str
    project: str | None
    data: Any  # JSON: a list of items, an object of lists, or one item
    duration_seconds: float


class Source(Protocol):
    name: str
    project: str | None

    def fetch(self) -> FetchResult:
        """Return the source's current items, or raise SourceFailed."""
        ...
