"""Small state files of the loop under state/: input hashes and caches that let an unchanged tick skip work."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from keystone_agents.atomic import write_atomic


def sha256_file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "absent"


def canonical_hash(value: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces), like the original's `jq -cS .`."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a source may print a lone surrogate (JSON "\\ud800"); ingest refuses that item, the hash
    # of the inputs must still be computed
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def write_text(path: Path, text: str) -> None:
    if read_text(path) != text:
        write_atomic(path, text)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=1, sort_keys=True, default=str))


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
