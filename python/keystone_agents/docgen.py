"""Reference documentation generated from the JSON Schemas, so docs cannot drift from what is enforced.

`scripts/gen-docs` rewrites the generated blocks of docs/file-formats.md and docs/configuration.md; a test
fails when a committed block differs from what the schemas say.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from keystone_agents.schemas import load_schema

BEGIN = "<!-- BEGIN GENERATED: {name} -->"
END = "<!-- END GENERATED: {name} -->"


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        merged = dict(root["$defs"][ref.split("/")[-1]])
        merged.update({k: v for k, v in schema.items() if k != "$ref"})
        return merged
    return schema


def _type_text(schema: dict, root: dict) -> str:
    schema = _resolve(schema, root)
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema and not _constraints_only(schema[key]):
            parts = [_type_text(s, root) for s in schema[key]]
            return " or ".join(p for p in parts if p)
    kind = schema.get("type")
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives and _constraints_only(alternatives) and kind == "object":
        needed = [" and ".join(f"`{r}`" for r in alt["required"]) for alt in alternatives if alt.get("required")]
        return "object" + (f" with {' or '.join(needed)}" if needed else "")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        items = schema.get("items", {})
        inner = _resolve(items, root)
        if inner.get("type") == "object" and "properties" in inner:
            return "list of entries"
        return f"list of {_type_text(items, root)}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return "map of name → " + (_type_text(schema["additionalProperties"], root) or "object")
    text = kind or ("object" if "properties" in schema else "")
    if schema.get("format") == "date-time":
        return "ISO 8601 date-time string"
    if schema.get("pattern"):
        text += f" matching `{schema['pattern']}`"
    return text


def _constraints_only(alternatives: list) -> bool:
    """anyOf/oneOf that only say which fields are required (not which types are allowed)."""
    return all(isinstance(a, dict) and set(a) <= {"required", "description"} for a in alternatives)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _fields_table(schema: dict, root: dict, prefix: str = "") -> list[str]:
    schema = _resolve(schema, root)
    required = set(schema.get("required", []))
    lines = ["| Field | Type | Required | Default | Description |", "|---|---|---|---|---|"]
    nested: list[tuple[str, dict]] = []
    for name, prop in schema.get("properties", {}).items():
        resolved = _resolve(prop, root)
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        desc = prop.get("description") or resolved.get("description", "")
        lines.append(
            f"| `{prefix}{name}` | {_cell(_type_text(prop, root))} | {'yes' if name in required else 'no'} | "
            f"{_cell(default)} | {_cell(desc)} |"
        )
        for candidate in [resolved] + [_resolve(s, root) for s in resolved.get("anyOf", [])]:
            if candidate.get("type") == "object" and candidate.get("properties"):
                nested.append((f"{prefix}{name}", candidate))
    for name, sub in nested:
        lines += ["", f"`{name}` fields:", ""] + _fields_table(sub, root, prefix=f"{name}.")
    return lines


def render_queue_file(name: str) -> str:
    root = load_schema(name)
    lines = [f"### {root['title']}", "", root["description"], ""]
    lines.append("Top-level keys (no others are allowed):")
    lines.append("")
    for key, prop in root["properties"].items():
        req = " (required)" if key in root.get("required", []) else ""
        lines.append(f"- `{key}`{req}: {prop['description']}")
    for key, prop in root["properties"].items():
        item = _resolve(prop["items"], root)
        lines += ["", f"Each entry of `{key}`:", ""] + _fields_table(item, root)
    return "\n".join(lines)


def render_file_formats() -> str:
    return "\n\n".join(render_queue_file(n) for n in ("tasks", "projects", "schedules", "issues"))


def render_configuration() -> str:
    root = load_schema("config")
    lines = [root["description"], ""] + _fields_table(root, root)
    defs = root["$defs"]
    for name in ("stage", "profile", "providerProfile", "source"):
        lines += ["", f"#### `{name}` objects", ""] + _fields_table(defs[name], root)
    return "\n".join(lines)


GENERATED = {
    "docs/file-formats.md": {"queue-files": render_file_formats},
    "docs/configuration.md": {"config": render_configuration},
}


def replace_block(text: str, name: str, body: str) -> str:
    begin, end = BEGIN.format(name=name), END.format(name=name)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"markers for {name!r} not found")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text)


def regenerate(repo: Path, check: bool = False) -> list[str]:
    """Rewrite (or, with check, compare) every generated block; returns the files that differ."""
    stale = []
    for rel, blocks in GENERATED.items():
        path = repo / rel
        text = path.read_text()
        new = text
        for name, render in blocks.items():
            new = replace_block(new, name, render())
        if new != text:
            stale.append(rel)
            if not check:
                path.write_text(new)
    return stale
