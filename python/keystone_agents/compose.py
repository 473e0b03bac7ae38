"""Prompt composition: a manifest (`manifests/modes.yaml`) and a mode → one system prompt.

Order, as in the seed's compose.sh: shared fragments → role templates → convention docs, where the
conventions of the manifest's archetype (from `<agents_repo>/archetypes.yaml`) come first among the
conventions and every fragment appears once. A missing fragment is an error naming it, never skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from keystone_agents.problems import Problem, ValidationFailed
from keystone_agents.queuefile import _line_of, schema_problems, to_plain

SECTIONS = (("shared", "shared"), ("roles", "roles"), ("conventions", "conventions"))


class CompositionError(Exception):
    """The manifest names something that is not there (a mode, a fragment, an archetype)."""


@dataclass(frozen=True)
class Fragment:
    kind: str  # shared | role | convention
    name: str
    path: Path
    referenced_by: str  # where the name came from, for error messages and --json

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "path": str(self.path), "from": self.referenced_by}


@dataclass
class Composition:
    manifest: Path
    mode: str | None
    fragments: list[Fragment] = field(default_factory=list)
    text: str = ""

    def as_dict(self) -> dict:
        return {
            "manifest": str(self.manifest),
            "mode": self.mode,
            "fragments": [f.as_dict() for f in self.fragments],
            "prompt": self.text,
        }


def _load_yaml(path: Path, schema: str | None) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationFailed([Problem(str(path), None, "", "file does not exist")]) from None
    try:
        node = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ValidationFailed(
            [Problem(str(path), mark.line + 1 if mark else None, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]
        ) from None
    if schema:
        problems = schema_problems(schema, None, to_plain(node), str(path), [], lambda p: _line_of(node, p))
        if problems:
            raise ValidationFailed(problems)
    return node


def _fragment_file(directory: Path, name: str) -> Path:
    return directory / (name if name.endswith(".md") else f"{name}.md")


def _archetype_conventions(agents_repo: Path, archetype: str | None) -> list[str]:
    if not archetype:
        return []
    path = agents_repo / "archetypes.yaml"
    node = _load_yaml(path, None)
    archetypes = to_plain(node).get("archetypes") if isinstance(to_plain(node), dict) else None
    if not isinstance(archetypes, dict):
        raise ValidationFailed([Problem(str(path), 1, "archetypes", "expected a mapping `archetypes: {name: {conventions: [...]}}`")])
    entry = archetypes.get(archetype)
    if entry is None:
        raise CompositionError(
            f"archetype {archetype!r} is not defined in {path} (defined: {', '.join(archetypes) or 'none'})"
        )
    conventions = (entry or {}).get("conventions", [])
    if not isinstance(conventions, list) or not all(isinstance(c, str) for c in conventions):
        raise ValidationFailed([Problem(str(path), _line_of(node, ["archetypes", archetype]), f"archetypes.{archetype}.conventions", "expected a list of convention names")])
    return conventions


def _unique(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    result = []
    for name, origin in items:
        key = name.removesuffix(".md")
        if key not in seen:
            seen.add(key)
            result.append((name, origin))
    return result


def plan(manifest: Path, mode: str | None, extra_roles: Iterable[str] = ()) -> Composition:
    """Resolve the fragments of `mode` (None: only shared defaults, extra roles and archetype conventions)."""
    manifest = Path(manifest)
    data = to_plain(_load_yaml(manifest, "modes"))
    agents_repo = Path(data.get("agents_repo", "../.agents"))
    if not agents_repo.is_absolute():
        agents_repo = (manifest.parent / agents_repo).resolve()
    modes = data["modes"]
    if mode is not None and mode not in modes:
        raise CompositionError(f"mode {mode!r} is not defined in {manifest} (modes: {', '.join(modes)})")
    spec = modes.get(mode, {}) if mode is not None else {}
    where = f"{manifest}: modes.{mode}" if mode else str(manifest)
    shared = _unique(
        [(n, f"{manifest}: defaults.shared") for n in data.get("defaults", {}).get("shared", [])]
        + [(n, f"{where}.shared") for n in spec.get("shared", [])]
    )
    roles = _unique([(n, f"{where}.roles") for n in spec.get("roles", [])] + [(n, "--roles") for n in extra_roles])
    archetype = data.get("archetype")
    conventions = _unique(
        [(n, f"{agents_repo / 'archetypes.yaml'}: archetypes.{archetype}") for n in _archetype_conventions(agents_repo, archetype)]
        + [(n, f"{where}.conventions") for n in spec.get("conventions", [])]
    )
    composition = Composition(manifest, mode)
    missing = []
    for kind, directory, names in (
        ("shared", agents_repo / "shared", shared),
        ("role", agents_repo / "roles", roles),
        ("convention", agents_repo / "conventions", conventions),
    ):
        for name, origin in names:
            path = _fragment_file(directory, name)
            if not path.is_file():
                missing.append(f"{kind} fragment {name!r} not found at {path} (named by {origin})")
            composition.fragments.append(Fragment(kind, name.removesuffix(".md"), path, origin))
    if missing:
        raise CompositionError("; ".join(missing))
    return composition


def compose(manifest: Path, mode: str | None, extra_roles: Iterable[str] = ()) -> Composition:
    """Plan and read the fragments; the prompt is the fragments joined by blank lines, in order."""
    composition = plan(manifest, mode, extra_roles)
    parts = [f.path.read_text(encoding="utf-8").strip() for f in composition.fragments]
    composition.text = "\n\n".join(p for p in parts if p) + "\n"
    return composition


def split_roles(value: str | None) -> list[str]:
    return [r.strip() for r in (value or "").split(",") if r.strip()]
