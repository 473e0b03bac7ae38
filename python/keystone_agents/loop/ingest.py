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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from keystone_agents import sanitize
from keystone_agents.mail import reply
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
    return sanitize.slug(text, limit)


def _text(value: Any, field: str = "item", multiline: bool = False) -> str:
    """A field of a source item, made safe (sanitize.clean_text); UnsafeText for a lone surrogate."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str):
        # descriptions are capped (and spilled to a file) when the task is made, not here
        return sanitize.clean_text(value, field=field, multiline=multiline, limit=1 << 62 if multiline else None)
    if isinstance(value, (int, float)):
        return str(value)
    return ""


def content_ref(source: str, raw: Any) -> str:
    text = json.dumps(raw, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
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
    """One raw item → Item, every text made safe; None for an unusable item, UnsafeText for one that cannot be
    made safe (a lone surrogate)."""
    if isinstance(raw, str):
        text = _text(raw, "item", multiline=True)
        if not text:
            return None
        first = sanitize.clean_text(text.splitlines()[0], field="item")
        return Item(source, project, content_ref(source, raw), first, text, True, raw)
    if not isinstance(raw, dict):
        return None
    if "from" in raw and "subject" in raw and "id" in raw:
        from keystone_agents.mail.parse import from_himalaya, is_himalaya_envelope

        if is_himalaya_envelope(raw):
            raw = from_himalaya(raw)
            if raw is None:
                return None
    source = _text(raw.get("source"), "source") or source
    ref = _text(raw.get("source_ref"), "source_ref") or _text(raw.get("url"), "url")
    if not ref and _text(raw.get("id"), "id"):
        ref = sanitize.clean_text(f"{source}-{_text(raw.get('id'), 'id')}", field="id")
    ref = ref or content_ref(source, raw)
    title = _text(raw.get("name"), "name") or _text(raw.get("title"), "title")
    description = (_text(raw.get("description"), "description", True) or _text(raw.get("body"), "body", True)
                   or _text(raw.get("title"), "title") or title)
    free_text = not title
    if not description and not title:
        return None
    return Item(source, project, ref, title or description.splitlines()[0], description or title, free_text, raw)


def collect(fetched: list[FetchResult], rejected: list[str] | None = None) -> tuple[list[Item], int]:
    """All normalized items in source order, and how many raw items were unusable (why an item was refused
    as unsafe is appended to `rejected`)."""
    items, skipped = [], 0
    for result in fetched:
        for source, raw in raw_items(result):
            try:
                item = normalize(source, result.project, raw)
            except sanitize.UnsafeText as exc:
                if rejected is not None:
                    rejected.append(f"source {result.name}: item refused: {exc}")
                item = None
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
            name = sanitize.bounded_name(base, f"-{n}")
            n += 1
        self.taken.add(name)
        return name


def new_tasks(items: list[Item], known_refs: set[str], namer: Namer, now: str,
              triage=None, spill_dir: Path | None = None) -> tuple[list[dict], list[Item]]:
    """→ (task entries to append, items skipped by triage). `triage(item)` → None (deterministic), a dict
    (the model's validated answer) or False (not actionable). Every entry is made safe by
    sanitize.clean_task (descriptions over 16 KiB go to a file in `spill_dir`)."""
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
        if item.source == "email" and reply.answerable({"source": "email"}, item.raw):
            entry["description"] = reply.with_hint(entry["description"], entry["name"])
        if project:
            entry["project"] = project
        entry.update({"source": item.source, "source_ref": item.source_ref, "created_at": now})
        tasks.append(sanitize.clean_task(entry, spill_dir=spill_dir))
    return tasks, skipped
