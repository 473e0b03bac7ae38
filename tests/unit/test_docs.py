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
