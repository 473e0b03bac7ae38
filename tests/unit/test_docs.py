"""The reference docs are generated from the schemas; a stale block fails here (fix: scripts/gen-docs)."""

from __future__ import annotations

from pathlib import Path

from keystone_agents.docgen import regenerate

REPO = Path(__file__).resolve().parents[2]


def test_generated_docs_match_the_schemas():
    assert regenerate(REPO, check=True) == [], "docs are stale: run scripts/gen-docs"


def test_every_schema_field_is_documented():
    from keystone_agents.schemas import load_schema

    text = (REPO / "docs/file-formats.md").read_text()
    for name in ("tasks", "projects", "schedules", "issues"):
        schema = load_schema(name)
        for definition in schema["$defs"].values():
            for field in definition.get("properties", {}):
                assert f"| `{field}` |" in text, (name, field)


def test_every_keystone_agent_command_is_documented():
    from keystone_agents.cli.agent import COMMANDS

    text = (REPO / "docs/cli.md").read_text()
    missing = [name for name in COMMANDS if f"| `{name}" not in text]
    assert missing == [], f"docs/cli.md lacks: {missing}"


def test_the_configuration_reference_renders_every_type():
    """Every property's type cell names each JSON type the schema admits (calendar once showed as `null`)."""
    from keystone_agents.docgen import _resolve, _type_text
    from keystone_agents.schemas import load_schema

    root = load_schema("config")
    words = {"object": ("object", "map of", "entries"), "array": ("list of", "array"), "null": ("null",),
             "string": ("string", "`", "date-time"), "integer": ("integer",), "number": ("number",),
             "boolean": ("boolean",)}

    def admitted(schema) -> set[str]:
        schema = _resolve(schema, root)
        if "enum" in schema:
            return set()
        kinds = schema.get("type")
        found = set(kinds if isinstance(kinds, list) else [kinds] if kinds else [])
        for alternative in schema.get("anyOf", []) + schema.get("oneOf", []):
            found |= admitted(alternative)
        return found

    def walk(schema, path):
        schema = _resolve(schema, root)
        for name, prop in schema.get("properties", {}).items():
            text = _type_text(prop, root)
            assert text, f"{path}{name}: empty type"
            for kind in admitted(prop):
                assert any(word in text for word in words[kind]), f"{path}{name}: {text!r} lacks {kind}"
            for candidate in [_resolve(prop, root)] + [_resolve(s, root) for s in _resolve(prop, root).get("anyOf", [])]:
                if candidate.get("properties"):
                    walk(candidate, f"{path}{name}.")

    walk(root, "")
    assert _type_text(root["properties"]["calendar"], root) == "null or object with `url` or `command`"
