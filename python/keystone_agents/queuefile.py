"""Load, validate and atomically save the human-edited queue files.

TASKS.yaml, PROJECTS.yaml, SCHEDULES.yaml and ISSUES.yaml are loaded with ruamel.yaml in round-trip
mode, so comments, key order, quoting and indentation of a hand-edited file survive a save. Problems
come in two kinds:

* file problems (not YAML, not a mapping, an unknown top-level key, the list is not a list): the file
  cannot be used and is never overwritten;
* entry problems (an empty name, an unknown status, a duplicate name, a wrong type): that entry is
  reported and isolated — the runtime neither runs nor rewrites it, a save keeps it verbatim — and the
  valid rest of the file stays usable.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.scalarstring import PlainScalarString
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from keystone_agents import yamlguard
from keystone_agents.atomic import write_atomic
from keystone_agents.plain import to_plain  # noqa: F401 - re-exported: callers use queuefile.to_plain
from keystone_agents.problems import Problem, ValidationFailed, field_path
from keystone_agents.schemas import load_schema, validator


@dataclass(frozen=True)
class QueueKind:
    """One kind of queue file: its name, its schema, and its lists of entries."""

    filename: str
    schema: str
    key: str  # the main list; the file must have it
    lists: tuple[tuple[str, str, str], ...]  # (top-level key, $defs entry name, field that must be unique)

    @property
    def allowed_keys(self) -> tuple[str, ...]:
        return tuple(key for key, _, _ in self.lists)


TASKS = QueueKind("TASKS.yaml", "tasks", "tasks", (("tasks", "task", "name"),))
PROJECTS = QueueKind(
    "PROJECTS.yaml", "projects", "projects", (("projects", "project", "slug"), ("sources", "source", "name"))
)
SCHEDULES = QueueKind("SCHEDULES.yaml", "schedules", "schedules", (("schedules", "schedule", "name"),))
ISSUES = QueueKind("ISSUES.yaml", "issues", "issues", (("issues", "issue", "name"),))
KINDS = {kind.schema: kind for kind in (TASKS, PROJECTS, SCHEDULES, ISSUES)}


# ---------------------------------------------------------------- editing


def _trailing_slot(node: Any) -> tuple[dict, Any, int] | None:
    """Where ruamel keeps the comment that follows the last line of `node` (the deepest last element)."""
    if isinstance(node, CommentedMap) and node:
        last = next(reversed(node))
        value = node[last]
        if isinstance(value, (CommentedMap, CommentedSeq)) and value:
            return _trailing_slot(value)
        return node.ca.items, last, 2
    if isinstance(node, CommentedSeq) and node:
        last = len(node) - 1
        value = node[last]
        if isinstance(value, (CommentedMap, CommentedSeq)) and value:
            return _trailing_slot(value)
        return node.ca.items, last, 0
    return None


def set_field(entry: CommentedMap, key: str, value: Any) -> None:
    """Set `key` on an entry. A new key goes last, and the blank lines and comments that followed the old
    last line (they belong to whatever comes next in the file) move below it instead of above it."""
    if key in entry or not entry:
        entry[key] = value
        return
    slot = _trailing_slot(entry)
    entry[key] = value
    if slot is None:
        return
    items, last, index = slot
    tokens = items.get(last)
    token = tokens[index] if tokens and len(tokens) > index else None
    if token is None or "\n" not in token.value:
        return
    head, _, tail = token.value.partition("\n")
    if not tail:
        return
    token.value = head + "\n"
    entry.ca.items[key] = [None, None, CommentToken("\n" + tail, CommentMark(0), None), None]


def delete_field(entry: CommentedMap, key: str) -> None:
    """Remove `key`; comments and blank lines that followed it stay in the file."""
    if key not in entry:
        return
    was_last = next(reversed(entry)) == key
    slot = _trailing_slot(entry) if was_last else None
    tail = ""
    if slot is not None:
        items, last, index = slot
        tokens = items.get(last)
        token = tokens[index] if tokens and len(tokens) > index else None
        if token is not None and "\n" in token.value:
            tail = token.value.partition("\n")[2]
    del entry[key]
    entry.ca.items.pop(key, None)
    if not tail or not entry:
        return
    items, last, index = _trailing_slot(entry)
    tokens = items.setdefault(last, [None, None, None, None])
    while len(tokens) <= index:
        tokens.append(None)
    if tokens[index] is None:
        tokens[index] = CommentToken("\n" + tail, CommentMark(0), None)
    else:
        tokens[index].value = tokens[index].value.rstrip("\n") + "\n" + tail


# ---------------------------------------------------------------- validation


def _line_of(node: Any, path: list) -> int | None:
    """1-based line of `path` inside a ruamel node, as deep as the node knows."""
    line = None
    for part in path:
        lc = getattr(node, "lc", None)
        if lc is None:
            break
        try:
            if isinstance(node, CommentedSeq):
                line = lc.item(part)[0] + 1
            elif isinstance(node, CommentedMap):
                line = lc.key(part)[0] + 1
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    if not path:
        lc = getattr(node, "lc", None)
        if lc is not None:
            line = lc.line + 1
    return line


def _field_path(parts: list) -> str:
    return field_path(parts)


def _describe_error(error, instance_schema: dict) -> list[tuple[list, str]]:
    """jsonschema error → [(relative path, message)] saying what was expected."""
    path = list(error.absolute_path)
    value = error.instance
    expected = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
    for marker in ("REQUIRED. ", "SHOULD. ", "MAY. "):  # RFC 2119 markers read oddly after "expected"
        expected = expected.removeprefix(marker)
    kind = error.validator
    if kind == "required":
        missing = [name for name in error.validator_value if name not in (value or {})]
        return [(path + [name], "required field is missing") for name in missing]
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extras = [k for k in value if k not in allowed]
        return [
            (path + [name], f"unknown field {name!r}; {_did_you_mean(name, allowed)}allowed fields: {', '.join(allowed)}")
            for name in extras
        ]
    if kind == "enum":
        choices = " | ".join(str(c) for c in error.validator_value)
        return [(path, f"{value!r} is not allowed; expected one of: {choices}")]
    if kind == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return [(path, f"expected {wanted}, got {_type_name(value)} {value!r}")]
    if kind == "pattern":
        hint = expected or f"a value matching {error.validator_value}"
        return [(path, f"{value!r} does not have the expected format: {hint}")]
    if kind == "minLength":
        return [(path, "must not be empty")]
    if kind in ("oneOf", "anyOf"):
        hint = expected or "a value of another type"
        return [(path, f"{value!r} is not valid: expected {hint}")]
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return [(path, f"{value!r} is out of range ({error.message})")]
    return [(path, error.message)]


def _did_you_mean(name: Any, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(str(name), choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def schema_problems(
    name: str, definition: str | None, plain: Any, file: str, prefix: list, locate: Callable[[list], int | None]
) -> list[Problem]:
    """Validate `plain` against a schema (or one of its $defs); problems positioned with `locate`."""
    problems: list[Problem] = []
    schema = load_schema(name)
    for error in sorted(validator(name, definition).iter_errors(plain), key=lambda e: list(e.absolute_path)):
        for rel, message in _describe_error(error, schema):
            full = prefix + rel
            problems.append(Problem(file, locate(full), _field_path(full), message))
    return sorted(problems, key=lambda p: p.line or 0)


# ---------------------------------------------------------------- documents


@dataclass
class QueueDocument:
    """A loaded queue file: the round-trip data, the entry problems, and how to write it back."""

    path: Path
    kind: QueueKind
    data: CommentedMap
    problems: list[Problem] = field(default_factory=list)
    invalid: set[int] = field(default_factory=set)  # id() of entries isolated at load
    _yaml: YAML | None = None
    exists: bool = True

    def entries(self, key: str | None = None) -> CommentedSeq:
        key = key or self.kind.key
        seq = self.data.get(key)
        if seq is None:
            seq = CommentedSeq()
            self.data[key] = seq
        return seq

    def valid_entries(self, key: str | None = None) -> Iterator[CommentedMap]:
        """The entries that passed validation, in file order."""
        for entry in self.entries(key):
            if id(entry) not in self.invalid:
                yield entry

    def append(self, entry: dict, key: str | None = None) -> CommentedMap:
        """Append a new entry in block style (an empty `tasks: []` would otherwise stay flow style)."""
        seq = self.entries(key)
        if not seq:
            seq.fa.set_block_style()
        node = CommentedMap(entry)
        seq.append(node)
        return node

    def find(self, value: str, key: str | None = None) -> CommentedMap | None:
        """The valid entry whose unique field (name, slug) equals `value`."""
        key = key or self.kind.key
        unique = next(u for k, _, u in self.kind.lists if k == key)
        for entry in self.valid_entries(key):
            if entry.get(unique) == value:
                return entry
        return None

    def is_valid(self, entry: Any) -> bool:
        return id(entry) not in self.invalid

    def dumps(self) -> str:
        stream = io.StringIO()
        self._yaml.dump(self.data, stream)
        return stream.getvalue()

    def save(self) -> None:
        """Validate, then replace the file atomically. Entries isolated at load are written back verbatim;
        any other problem (a runtime bug) refuses the write and the old file stays."""
        file_problems, entry_problems, bad = _validate(self.data, self.kind, self.path.name, self._locate)
        new_bad = [p for p, entry in entry_problems if id(entry) not in self.invalid]
        if file_problems or new_bad:
            raise ValidationFailed(file_problems + new_bad)
        text = self.dumps()
        try:  # the text must read back as what we hold: never write a file the readers would reject or misread
            same = to_plain(loads(text, self.path, self.kind).data) == to_plain(self.data)
        except ValidationFailed:
            same = False
        if not same:
            raise ValidationFailed([Problem(str(self.path), None, "", "edit not written, the file is left as it "
                                            "was: the saved text would not read back as the edited data")])
        write_atomic(self.path, text)
        self.exists = True

    def _locate(self, path: list) -> int | None:
        return _line_of(self.data, path)


class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor, except that a timestamp Python cannot represent (`0000-00-00`, a year-1
    time with an offset) stays the string it was written as: the schema then reports that one value."""

    def construct_yaml_timestamp(self, node, values=None):
        try:
            value = super().construct_yaml_timestamp(node, values)
            if isinstance(value, dt.datetime):
                value.isoformat()
                if value.tzinfo is not None:
                    value.astimezone(dt.timezone.utc)
            return value
        except (ValueError, OverflowError):
            return PlainScalarString(node.value)  # written back as it was (unquoted)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


def new_entry(items) -> CommentedMap:
    """A new entry for a round-trip document (block style), from (key, value) pairs in the order to write."""
    node = CommentedMap()
    for key, value in items:
        node[key] = CommentedSeq(value) if isinstance(value, (list, tuple)) else value
    return node


def _yaml_for(text: str) -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a human's long lines
    indent, offset = 2, 0
    if text.strip():
        try:
            _, indent, offset = load_yaml_guess_indent(text)
        except Exception:  # noqa: BLE001 - the real parse below reports the error
            indent, offset = 2, 0
        indent = indent or 2
        offset = offset or 0
    yaml.indent(mapping=max(indent - offset, 2), sequence=max(indent, offset + 2), offset=offset)
    yaml.explicit_start = _has_document_start(text)
    return yaml


def _has_document_start(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        return stripped.startswith("---")
    return False


def _validate(data: Any, kind: QueueKind, file: str, locate) -> tuple[list[Problem], list[tuple[Problem, Any]], set]:
    """→ (file problems, [(entry problem, entry)], ids of bad entries)."""
    if not isinstance(data, dict):
        return [Problem(file, locate([]) or 1, "", f"expected a mapping with the key {kind.key!r}, got {_type_name(to_plain(data))}")], [], set()
    file_problems: list[Problem] = []
    for key in data:
        if key not in kind.allowed_keys:
            allowed = ", ".join(kind.allowed_keys)
            hint = _did_you_mean(key, list(kind.allowed_keys))
            file_problems.append(
                Problem(file, locate([key]), str(key), f"unknown top-level key; {hint}the only keys allowed are: {allowed}")
            )
    if kind.key not in data:
        file_problems.append(Problem(file, 1, kind.key, f"required top-level key {kind.key!r} is missing"))
    entry_problems: list[tuple[Problem, Any]] = []
    bad: set[int] = set()
    for key, definition, unique in kind.lists:
        if key not in data:
            continue
        seq = data[key]
        if seq is None:
            continue  # `tasks:` with nothing under it is an empty list
        if not isinstance(seq, list):
            file_problems.append(
                Problem(file, locate([key]), key, f"expected a list of entries, got {_type_name(to_plain(seq))}")
            )
            continue
        seen: dict[str, int] = {}
        for index, entry in enumerate(seq):
            plain = to_plain(entry)
            found = schema_problems(kind.schema, definition, plain, file, [key, index], locate)
            ident = plain.get(unique) if isinstance(plain, dict) else None
            if isinstance(ident, str) and ident:
                if ident in seen:
                    first = locate([key, seen[ident]])
                    found.append(
                        Problem(
                            file,
                            locate([key, index, unique]),
                            _field_path([key, index, unique]),
                            f"duplicate {unique} {ident!r} (first defined at line {first}); {unique}s must be unique",
                        )
                    )
                else:
                    seen[ident] = index
            if found:
                bad.add(id(entry))
                entry_problems.extend((p, entry) for p in found)
    return file_problems, entry_problems, bad


def load(path: str | Path, kind: QueueKind, *, missing_ok: bool = True) -> QueueDocument:
    """Load a queue file for reading and writing.

    Raises ValidationFailed for file problems; entry problems are in `.problems` and those entries are
    isolated. A missing file is an empty document (when `missing_ok`). Hostile text (not UTF-8, control
    characters, tags, directives, alias bombs, deep nesting, huge numbers) is a file problem (yamlguard).
    """
    path = Path(path)
    try:
        text = yamlguard.read(path)
        exists = True
    except FileNotFoundError:
        if not missing_ok:
            raise ValidationFailed([Problem(str(path), None, "", "file does not exist")]) from None
        text, exists = "", False
    return loads(text, path, kind, exists=exists)


def loads(text: str, path: str | Path, kind: QueueKind, *, exists: bool = True) -> QueueDocument:
    """`load` for text already read (`path` names the file in problems and is where `save` writes)."""
    path = Path(path)
    if text.strip():
        yamlguard.check(text, str(path))
    yaml = _yaml_for(text)
    try:
        data = yaml.load(text) if text.strip() else None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ValidationFailed([Problem(str(path), line, "", f"not valid YAML: {exc.problem or exc}")]) from None
    except YAMLError as exc:
        raise ValidationFailed([Problem(str(path), None, "", f"not valid YAML: {exc}")]) from None
    except Exception as exc:  # noqa: BLE001 - last resort: ruamel fails in odd ways on odd input (`+_` → IndexError)
        raise ValidationFailed([Problem(str(path), None, "", f"cannot be read: {type(exc).__name__}: {str(exc)[:200]}")]) from None
    if data is None:
        data = CommentedMap()
        data[kind.key] = CommentedSeq()
    doc = QueueDocument(path=path, kind=kind, data=data, _yaml=yaml, exists=exists)
    file_problems, entry_problems, bad = _validate(data, kind, str(path), doc._locate)
    if file_problems:
        raise ValidationFailed(file_problems + [p for p, _ in entry_problems])
    doc.problems = [p for p, _ in entry_problems]
    doc.invalid = bad
    return doc


def check(path: str | Path, kind: QueueKind) -> list[Problem]:
    """Every problem of a queue file, file problems and entry problems alike (for `validate`)."""
    try:
        return load(path, kind).problems
    except ValidationFailed as exc:
        return exc.problems
