"""The JSON Schemas shipped in the package: one file per queue file, one for the agent config."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


SCHEMA_NAMES = ("tasks", "projects", "schedules", "issues", "config", "host-config", "modes")


@cache
def load_schema(name: str) -> dict:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}")
    text = resources.files("keystone_agents").joinpath("schemas", f"{name}.schema.json").read_text()
    return json.loads(text)


@cache
def validator(name: str, definition: str | None = None) -> "Draft202012Validator":  # noqa: F821
    """A validator for a whole schema, or for one of its `$defs` (so entries validate one by one)."""
    from jsonschema import Draft202012Validator  # lazy: importing jsonschema costs ~0.2 s at every start

    schema = load_schema(name)
    if definition is not None:
        schema = {"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}
    return Draft202012Validator(schema)
