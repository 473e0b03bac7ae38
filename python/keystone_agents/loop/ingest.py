"""Ingest, deterministic: source items → new pending tasks, each source item once.

Mapping of an item (a JSON object) to a task:
  source_ref  ← source_ref | url | "<source>-<id>" | "<source>-<sha256 of the item>[:16]"
  name        ← kebab-case of name | title (unique: -2, -3, … appended), else "<source>-item"
  description ← description | body | title | name
  project     ← the project of the source (per-project sources in PROJECTS.yaml, or a config source's project)
  source      ← the item's own `source` (built-in sources set it: email, github-pr-review, ...), else the
                source's name (for an object of lists such as {"github-issues": [...]}, the key)
A himalaya envelope (`himalaya envelope list -o json`, plus `body` as the seed's fetch-email-source adds it)
becomes an email item: source email, source_ref email-<id>-<sender>; no-reply senders are skipped.
A string item is free text: its first line names it, the whole text describes it.
Dedup is by source_ref against every task ever ingested: TASKS.yaml and TASKS.archive.yaml.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable

from keystone_agents.sources import FetchResult

NAME_MAX = 60


@dataclass
class Item:
    source: str
    project: str | None
    source_ref: str
    title: str
    description: str
    free_text: bool
    raw: Any = field(repr=False, default=None)


def slug(text: str, limit: int = NAME_MAX) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    if len(text) > limit:
        cut = text[:limit]
        text = cut.rsplit("-", 1)[0] if "-" in cut[limit // 2:] else cut
    return text.strip("-")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)):
        return str(value)
    return ""


def content_ref(source: str, raw: Any) -> str:
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    return f"{source}-{digest}"


def raw_items(fetched: FetchResult) -> Iterable[tuple[str, Any]]:
    data = fetched.data
    if isinstance(data, list):
        for raw in data:
            yield fetched.name, raw
    elif isinstance(data, dict):
        if data and all(isinstance(v, list) for v in data.values()):
            for key, values in data.items():
                for raw in values:
                    yield str(key), raw
        elif data:
            yield fetched.name, data


def normalize(source: str, project: str | None, raw: Any) -> Item | None:
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        first = text.splitlines()[0]
        return Item(source, project, content_ref(source, raw), first, text, True, raw)
    if not isinstance(raw, dict):
        return None
    if "from" in raw and "subject" in raw and "id" in raw:
        from keystone_agents.mail.parse import from_himalaya, is_himalaya_envelope

        if is_himalaya_envelope(raw):
            raw = from_himalaya(raw)
            if raw is None:
                return None
    source = _text(raw.get("source")) or source
    ref = _text(raw.get("source_ref")) or _text(raw.get("url"))
    if not ref and _text(raw.get("id")):
        ref = f"{source}-{_text(raw.get('id'))}"
    ref = ref or content_ref(source, raw)
    title = _text(raw.get("name")) or _text(raw.get("title"))
    description = _text(raw.get("description")) or _text(raw.get("body")) or _text(raw.get("title")) or title
    free_text = not title
    if not description and not title:
        return None
    return Item(source, project, ref, title or description.splitlines()[0], description or title, free_text, raw)


def collect(fetched: list[FetchResult]) -> tuple[list[Item], int]:
    """All normalized items in source order, and how many raw items were unusable."""
    items, skipped = [], 0
    for result in fetched:
        for source, raw in raw_items(result):
            item = normalize(source, result.project, raw)
            if item is None:
                skipped += 1
            else:
                items.append(item)
    return items, skipped


class Namer:
    """Unique kebab-case names against every name in the queue and the archive."""

    def __init__(self, taken: Iterable[str]):
        self.taken = set(taken)

    def name(self, wanted: str, fallback: str) -> str:
        base = slug(wanted) or slug(fallback) or "task"
        name, n = base, 2
        while name in self.taken:
            name = f"{base}-{n}"
            n += 1
        self.taken.add(name)
        return name


def new_tasks(items: list[Item], known_refs: set[str], namer: Namer, now: str,
              triage=None) -> tuple[list[dict], list[Item]]:
    """→ (task entries to append, items skipped by triage). `triage(item)` → None (deterministic), a dict
    (the model's validated answer) or False (not actionable)."""
    tasks, skipped = [], []
    seen = set(known_refs)
    for item in items:
        if item.source_ref in seen:
            continue
        seen.add(item.source_ref)
        title, description, project = item.title, item.description, item.project
        if triage is not None and item.free_text:
            answer = triage(item)
            if answer is False:
                skipped.append(item)
                continue
            if isinstance(answer, dict):
                title = answer["name"]
                description = answer["description"]
                project = project or answer.get("project")
        entry = {
            "name": namer.name(title, item.source + "-item"),
            "description": description or title,
            "status": "pending",
        }
        if project:
            entry["project"] = project
        entry.update({"source": item.source, "source_ref": item.source_ref, "created_at": now})
        tasks.append(entry)
    return tasks, skipped
