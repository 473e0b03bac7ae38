"""The source interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


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
    # Called by the loop once the items are safely in TASKS.yaml (never on a dry run): a source that tracks
    # what it has delivered (IMAP UIDs) advances its state here, so a crash before ingest loses nothing.
    commit: Callable[[], None] | None = field(default=None, compare=False, repr=False)


class Source(Protocol):
    name: str
    project: str | None

    def fetch(self) -> FetchResult:
        """Return the source's current items, or raise SourceFailed."""
        ...
