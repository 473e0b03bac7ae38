"""A validation problem that names the file, the line and the field, and the error that carries them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None  # 1-based; None when the problem has no position (a missing file, say)
    field: str  # a path like tasks[3].status, or "" for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


def field_path(parts: list) -> str:
    """["tasks", 3, "status"] → "tasks[3].status" (the FIELD of a problem)."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class ValidationFailed(Exception):
    """A file or configuration that must not be used (or overwritten) as it is."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
