"""Parsing the reviewer's answer: `COMMENT: path:LINE … END_COMMENT` blocks and a `VERDICT: PASS|FAIL` line.

Models decorate their output, so the parser tolerates markdown emphasis (`**COMMENT:**`), list bullets,
code fences, a missing END_COMMENT (the block then ends at the next COMMENT: or VERDICT:), line ranges
(`path:10-14`, the first line is used), comments without a line, and mixed case. The verdict is the last
VERDICT line (one quoting the format earlier does not count; a VERDICT line also ends an unclosed comment);
no verdict at all counts as FAIL, since nothing said the change was fine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DECOR = r"[\s>*_`#\-]*"
_COMMENT_START = re.compile(rf"^{_DECOR}COMMENT{_DECOR}:{_DECOR}(?P<rest>.*)$", re.I)
_COMMENT_END = re.compile(rf"^{_DECOR}END[_ ]?COMMENT{_DECOR}$", re.I)
_VERDICT = re.compile(rf"^{_DECOR}VERDICT{_DECOR}:{_DECOR}(?P<v>PASS|FAIL)\b", re.I)
_TOKEN = re.compile(r"^(?P<path>[^:\s]+?)(?::(?P<line>\d+)(?:\s*-\s*\d+)?)?:?$")
_FILE_LIKE = re.compile(r"/|\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class ReviewComment:
    path: str | None
    line: int | None
    body: str

    def as_text(self) -> str:
        where = f"{self.path}:{self.line}" if self.path and self.line else (self.path or "general")
        return f"{where}\n{self.body}"

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "body": self.body}


@dataclass
class Review:
    verdict: str  # "PASS" | "FAIL"
    explicit: bool  # False when the reviewer gave no VERDICT line (counted as FAIL)
    comments: list[ReviewComment] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    def comments_text(self) -> str:
        return "\n\n".join(c.as_text() for c in self.comments)


def _location(header: str) -> tuple[str | None, int | None, str]:
    """`path:LINE rest…` → (path, line, rest); a header that names no file is a general comment's text."""
    header = header.strip()
    token, _, rest = header.partition(" ")
    token = token.strip("`*_'\"").rstrip(",;)")
    match = _TOKEN.match(token)
    if match and (match.group("line") or _FILE_LIKE.search(match.group("path"))):
        line = int(match.group("line")) if match.group("line") else None
        return match.group("path"), line, rest.strip().lstrip("-:–— ").strip()
    return None, None, header


def parse_review(output: str) -> Review:
    comments: list[ReviewComment] = []
    verdict: str | None = None
    current: tuple[str | None, int | None, list[str]] | None = None

    def close() -> None:
        nonlocal current
        if current is not None:
            path, line, lines = current
            body = "\n".join(lines).strip().strip("`").strip()
            if body or path:
                comments.append(ReviewComment(path, line, body))
            current = None

    for raw in output.splitlines():
        stripped = raw.strip()
        if stripped.startswith("```"):
            continue  # fences around blocks are decoration
        if _COMMENT_END.match(stripped):
            close()
            continue
        start = _COMMENT_START.match(stripped)
        if start:
            close()
            path, line, text = _location(start.group("rest"))
            current = (path, line, [text] if text else [])
            continue
        found = _VERDICT.match(stripped)
        if found:
            close()
            verdict = found.group("v").upper()
            continue
        if current is not None:
            current[2].append(raw.rstrip())
    close()
    return Review(verdict=verdict or "FAIL", explicit=verdict is not None, comments=comments)
