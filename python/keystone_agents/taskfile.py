"""A fast, comment-preserving reader and editor of TASKS.yaml (and TASKS.archive.yaml) for the task loop.

Why not `queuefile.load` (ruamel round-trip)? It costs ~2 s for 1,000 tasks and ~30 s for 10,000, and the
loop runs every five minutes. This module parses once with libyaml (`CSafeLoader`, C speed), keeps the file as
text cut into one chunk per task entry, and edits that text surgically:

* an unchanged entry keeps its exact bytes (comments, quoting, indentation, flow- or block-style lists);
* setting or removing a field of a block-style entry replaces only that field's text;
* a flow-style entry (`- {name: a, ...}`) that the loop changes is rewritten in block style;
* reordering moves whole chunks (a comment line above an entry travels with it);
* appending writes new entries with the indentation of the existing ones.

Validation uses the same JSON Schema as everything else (`schemas/tasks.schema.json`), preceded by a fast
check that accepts only entries the schema certainly accepts; anything else goes to jsonschema for the exact
message. Problems name the file, the line and the field; invalid entries are isolated and kept verbatim.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml

from keystone_agents import yamlguard
from keystone_agents.atomic import write_atomic
from keystone_agents.plain import to_plain
from keystone_agents.problems import Problem, ValidationFailed
from keystone_agents.sanitize import MODEL_MAX, MODEL_RE, NAME_MAX, WORKFLOW_RE

try:  # libyaml; the pure-Python loader is a slow but correct fallback
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """libyaml's safe loader, except that a timestamp Python cannot represent (`0000-00-00`, a year-1 time with
    an offset) stays the string it was written as: the schema then reports that one value, nothing crashes."""

    def construct_yaml_timestamp(self, node):
        try:
            value = super().construct_yaml_timestamp(node)
            if isinstance(value, _dt.datetime):
                value.isoformat()
                if value.tzinfo is not None:
                    value.astimezone(_dt.timezone.utc)
            return value
        except (ValueError, OverflowError):
            return node.value


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)

# Plain scalars are typed as YAML 1.2 types them (the round-trip reader, ruamel, reads YAML 1.2), not as
# PyYAML's YAML 1.1: `yes`, `no`, `on`, `off` and `10:00` are strings, `0123` is 123, `1e3` is a float. The
# fast and the round-trip reader must see the same values, or they would not agree on what is valid.
_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("float", r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", "-+0123456789."),
    ("int", r"""^(?:[-+]?0b[0-1_]+
                |[-+]?0o?[0-7_]+
                |[-+]?[0-9_]+
                |[-+]?0x[0-9a-fA-F_]+)$""", "-+0123456789"),
    ("merge", r"^(?:<<)$", "<"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("timestamp", r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                      |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
                      (?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
                      (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""", "0123456789"),
):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_regexp, re.X), list(_first))


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    digits = text.replace("_", "")
    sign = -1 if digits[:1] == "-" else 1
    digits = digits.lstrip("+-")
    for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
        if digits.startswith(prefix) and len(digits) > 2:
            return sign * int(digits[2:], base)
    return sign * int(digits) if digits.isdigit() else text


def _construct_float(loader, node):
    text = loader.construct_scalar(node).replace("_", "").lower()
    if text.lstrip("+-") == ".inf":
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


class EditRefused(ValidationFailed):
    """An edit of TASKS.yaml that could not be written without damaging the file; the file was left as it was."""

STATUSES = ("pending", "in_progress", "completed", "blocked")
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
STRING_FIELDS = ("source", "source_ref", "blocked_reason")
# fields with a shape (sanitize's patterns, the same as the schema's): a name, a model, a workflow
SHAPED_FIELDS = {"project": (NAME_RE, NAME_MAX), "profile": (NAME_RE, NAME_MAX), "model": (MODEL_RE, MODEL_MAX),
                 "fallback_model": (MODEL_RE, MODEL_MAX), "workflow": (WORKFLOW_RE, 128)}
ENUMS = {
    "status": STATUSES,
    "provider": ("claude", "gemini", "codex", "command", "openai"),
    "effort": ("low", "medium", "high", "max"),
}
TIME_FIELDS = ("created_at", "started_at", "completed_at")
KNOWN_FIELDS = (
    "name", "description", "status", "project", "source", "source_ref", "profile", "provider", "model",
    "fallback_model", "effort", "workflow", "needs", "once", "blocked_reason", "created_at", "started_at",
    "completed_at",
)
# Field order of entries the runtime writes (humans may use any order).
WRITE_ORDER = {name: i for i, name in enumerate(KNOWN_FIELDS)}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


plain = to_plain  # libyaml values as JSON types (timestamps as ISO 8601 strings)


# ---------------------------------------------------------------- scalar output

_PLAIN_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
# Characters YAML reads back differently or refuses unescaped (line breaks it folds, DEL, C1, BOM, non-characters)
_YAML_ESCAPE = re.compile("[\u2028\u2029\x7f-\x9f\ufeff\ufffe\uffff]")
_UNREPRESENTABLE = re.compile("[\ud800-\udfff]")


class Unrepresentable(ValueError):
    """A value the fast writer will not write, because YAML cannot represent it; `field` names it."""

    def __init__(self, message: str, field: str = ""):
        self.field = field
        super().__init__(message)


def field_scalar(key: str, value: Any) -> str:
    try:
        return scalar(value)
    except Unrepresentable as exc:
        raise Unrepresentable(str(exc), key) from None
try:  # the C encoder behind json.dumps(ensure_ascii=False), without json.dumps' per-call overhead
    from json.encoder import c_encode_basestring as _encode_string
except ImportError:  # pragma: no cover
    from json.encoder import py_encode_basestring as _encode_string


def scalar(value: Any) -> str:
    """One YAML scalar (or flow list) that libyaml reads back as exactly `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    text = value if isinstance(value, str) else str(value)
    if _PLAIN_OK.match(text) and text.lower() not in _YAML_WORDS:
        return text
    bad = _UNREPRESENTABLE.search(text)
    if bad:  # a lone surrogate: no YAML (no UTF-8) can hold it; refuse rather than corrupt the file
        raise Unrepresentable(f"U+{ord(bad.group()):04X} at character {bad.start()} cannot be written to YAML")
    # A JSON string is a YAML double-quoted scalar; escape what YAML would fold or reject (JSON escapes C0
    # controls itself; DEL, C1 controls and the non-characters YAML may not print are escaped here).
    out = _encode_string(text)
    if _YAML_ESCAPE.search(out):
        out = _YAML_ESCAPE.sub(_yaml_escape, out)
    return out


def _yaml_escape(match: re.Match) -> str:
    char = match.group()
    return {"\u2028": "\\L", "\u2029": "\\P", "\u0085": "\\N"}.get(char) or f"\\u{ord(char):04X}"


def entry_lines(entry: dict, dash_col: int = 2, key_col: int = 4) -> str:
    """A new block-style entry, keys in the canonical order."""
    keys = sorted(entry, key=lambda k: WRITE_ORDER.get(k, 99))
    lines = []
    for i, key in enumerate(keys):
        prefix = (" " * dash_col + "-" + " " * (key_col - dash_col - 1)) if i == 0 else " " * key_col
        lines.append(f"{prefix}{key}: {field_scalar(key, entry[key])}\n")
    return "".join(lines)


# ---------------------------------------------------------------- validation


def fast_valid(entry: Any) -> bool:
    """True only for entries the tasks schema certainly accepts (False means: ask jsonschema)."""
    if not isinstance(entry, dict):
        return False
    for key, value in entry.items():
        if key == "name":
            if not (isinstance(value, str) and NAME_RE.match(value) and len(value) <= NAME_MAX):
                return False
        elif key in SHAPED_FIELDS:
            shape, longest = SHAPED_FIELDS[key]
            if not (isinstance(value, str) and shape.match(value) and len(value) <= longest):
                return False
        elif key == "description":
            if not (isinstance(value, str) and value):
                return False
        elif key in ENUMS:
            if value not in ENUMS[key] or not isinstance(value, str):
                return False
        elif key in STRING_FIELDS:
            if not isinstance(value, str):
                return False
        elif key == "needs":
            if not (isinstance(value, list) and all(isinstance(v, str) and NAME_RE.match(v) and len(v) <= NAME_MAX
                                                    for v in value)):
                return False
        elif key == "once":
            if not isinstance(value, bool):
                return False
        elif key in TIME_FIELDS:
            if not (isinstance(value, str) and TIMESTAMP_RE.match(value)):
                return False
        else:
            return False
    return "name" in entry and "description" in entry and "status" in entry


def entry_problems(entry: Any, file: str, index: int, lines: dict[str, int], line: int,
                   locate: Callable[[list], int | None] | None = None) -> list[Problem]:
    """Schema problems of one entry, each at the line of its field (`locate(relative path)` when given, else
    `lines[top-level field]`, else the entry's line)."""
    if fast_valid(entry):
        return []
    from keystone_agents.queuefile import _describe_error, _field_path  # lazy: jsonschema is slow to import
    from keystone_agents.schemas import load_schema, validator

    problems = []
    schema = load_schema("tasks")
    for error in sorted(validator("tasks", "task").iter_errors(entry), key=lambda e: list(e.absolute_path)):
        for rel, message in _describe_error(error, schema):
            if locate is not None:
                where = locate(rel) or line
            else:
                where = lines.get(rel[0], line) if rel else line
            problems.append(Problem(file, where, _field_path(["tasks", index, *rel]), message))
    return problems


# ---------------------------------------------------------------- the document


@dataclass
class Entry:
    """One task entry: its text (a chunk of the file), its data, and whether it is valid."""

    text: str
    data: Any
    line: int  # 1-based line of the entry in the file when loaded
    valid: bool = True
    problems: list[Problem] = field(default_factory=list)
    origin: int | None = None  # index in the file as last read or written (None: not from this file)
    verified: str | None = None  # the text as last read or written (text != verified: edited since)
    source: str | None = None  # the entry's own text in the file as read (for invalid entries: kept verbatim)

    @property
    def name(self) -> str | None:
        return self.data.get("name") if isinstance(self.data, dict) else None

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default) if isinstance(self.data, dict) else default


class TaskFile:
    """TASKS.yaml as prefix + entry chunks + suffix. `text()` of an unedited file is the file's bytes."""

    def __init__(self, path: Path, text: str, exists: bool):
        self.path = Path(path)
        self.exists = exists
        self.original = text
        self.prefix = ""
        self.suffix = ""
        self.entries: list[Entry] = []
        self.problems: list[Problem] = []
        self.dash_col, self.key_col = 2, 4
        self._empty_fix: tuple[str, str] | None = None  # (prefix, suffix) to use once entries are appended
        self._rewritten = False  # the file's frame (prefix/suffix) changes when saved: verify the whole text
        self._stale: str | None = None  # why the entries' text no longer matches their data (round-trip on save)
        self.saved_sha = sha256_bytes(text.encode("utf-8"))
        self.style = yamlguard.Style()
        self._parse(text)
        for index, entry in enumerate(self.entries):
            entry.origin = index

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | Path, missing_ok: bool = True) -> "TaskFile":
        path = Path(path)
        try:
            text = yamlguard.read(path)
            exists = True
        except FileNotFoundError:
            if not missing_ok:
                raise ValidationFailed([Problem(str(path), None, "", "file does not exist")]) from None
            text, exists = "", False
        return cls(path, text, exists)

    def _fail(self, line: int | None, fld: str, message: str) -> None:
        raise ValidationFailed([Problem(str(self.path), line, fld, message)])

    def _parse(self, text: str) -> None:
        if not text.strip():
            self.prefix, self.suffix = "", ""
            self._empty_fix = ("tasks:\n", "")
            return
        self.style = yamlguard.check(text, str(self.path))  # hostile text becomes problems here
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            data = plain(loader.construct_document(root)) if root is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self._fail(mark.line + 1 if mark else None, "", f"not valid YAML: {exc.problem or exc}")
        except yaml.YAMLError as exc:
            self._fail(None, "", f"not valid YAML: {exc}")
        except (RecursionError, MemoryError, ValueError, OverflowError, TypeError) as exc:  # last resort
            self._fail(None, "", f"cannot be read: {type(exc).__name__}: {str(exc)[:200]}")
        finally:
            loader.dispose()
        if root is None or (isinstance(root, yaml.ScalarNode) and data is None):
            self.prefix, self.suffix = text, ""
            self._empty_fix = (text if text.endswith("\n") else text + "\n", "")
            self._empty_fix = (self._empty_fix[0] + "tasks:\n", "")
            return
        if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
            self._fail(root.start_mark.line + 1, "",
                       f"expected a mapping with the key 'tasks', got {_type_name(data)}")
        seq_node = None
        wrong = []  # every file-level problem at once, as queuefile reports them
        for key_node, value_node in root.value:
            if key_node.value != "tasks":
                wrong.append(Problem(str(self.path), key_node.start_mark.line + 1, str(key_node.value),
                                     "unknown top-level key; the only keys allowed are: tasks"))
            else:
                seq_node, key_line = value_node, key_node.start_mark.line + 1
        if seq_node is None:
            wrong.append(Problem(str(self.path), 1, "tasks", "required top-level key 'tasks' is missing"))
        items = data.get("tasks")
        if wrong:  # the entries' problems too, as the round-trip reader reports them
            if seq_node is not None and not isinstance(seq_node, yaml.SequenceNode) and items is not None:
                wrong.append(Problem(str(self.path), key_line, "tasks",
                                     f"expected a list of entries, got {_type_name(items)}"))
            if isinstance(seq_node, yaml.SequenceNode) and isinstance(items, list):
                self.entries = [Entry("", d, n.start_mark.line + 1) for n, d in zip(seq_node.value, items)]
                self._validate_all(seq_node.value)
                self.entries = []
            raise ValidationFailed(wrong + self.problems)
        if isinstance(seq_node, yaml.ScalarNode) and items is None:  # `tasks:` with nothing under it
            end = _line_end(text, root.value[0][0].end_mark.index)
            self.prefix, self.suffix = text, ""
            self._empty_fix = (text[:end], text[end:])
            return
        if not isinstance(seq_node, yaml.SequenceNode):
            self._fail(key_line, "tasks", f"expected a list of entries, got {_type_name(items)}")
        if not seq_node.value:  # `tasks: []`
            start, stop = seq_node.start_mark.index, seq_node.end_mark.index
            end = _line_end(text, stop)
            self.prefix, self.suffix = text, ""
            self._empty_fix = (text[:start].rstrip(" ") + text[stop:end].rstrip("\n") + "\n", text[end:])
            return
        if seq_node.flow_style:
            self._load_flow_seq(text, seq_node, items)
        else:
            self._load_block_seq(text, seq_node, items, _line_end(text, root.value[0][0].end_mark.index))
        self._validate_all(seq_node.value)
        if seq_node.flow_style:  # invalid entries of a one-line flow list keep their exact text
            for entry in self.entries:
                if not entry.valid and entry.source is not None and "\n" not in entry.source:
                    entry.text = entry.verified = " " * self.dash_col + "- " + entry.source + "\n"

    def _load_block_seq(self, text: str, seq: yaml.SequenceNode, items: list, after_key: int) -> None:
        nodes = seq.value
        first = nodes[0]
        dash = text.rfind("-", 0, first.start_mark.index)
        # Comment lines between `tasks:` and the first entry belong to that entry (they move with it).
        self.prefix = text[: min(after_key, _line_start(text, dash))]
        self.dash_col = dash - _line_start(text, dash)
        if isinstance(first, yaml.MappingNode) and not first.flow_style:
            self.key_col = first.start_mark.column
            if self.key_col <= self.dash_col:
                self.key_col = self.dash_col + 2
        bounds = [_content_end(text, node) for node in nodes]
        start = len(self.prefix)
        for node, data, stop in zip(nodes, items, bounds):
            chunk = text[start:stop]
            self.entries.append(Entry(chunk, data, node.start_mark.line + 1, verified=chunk,
                                      source=text[node.start_mark.index:_node_end(node)]))
            start = stop
        self.suffix = text[start:]

    def _load_flow_seq(self, text: str, seq: yaml.SequenceNode, items: list) -> None:
        # `tasks: [{...}, {...}]`: rewritten in block style (only if the loop changes the file).
        start = seq.start_mark.index
        self.prefix = text[:start].rstrip(" ") + "\n"
        end = _line_end(text, seq.end_mark.index)
        rest_of_line = text[seq.end_mark.index:end].strip()
        self.suffix = (rest_of_line + "\n" if rest_of_line else "") + text[end:]
        for node, data in zip(seq.value, items):
            if isinstance(data, dict):
                chunk = entry_lines(data)
            else:  # not a mapping: kept as it was written, it is an invalid entry anyway
                chunk = "  - " + text[node.start_mark.index: node.end_mark.index].replace("\n", " ") + "\n"
            # verified=None: every entry of a rewritten flow list is checked when saved
            self.entries.append(Entry(chunk, data, node.start_mark.line + 1,
                                      source=text[node.start_mark.index:node.end_mark.index]))
        self._rewritten = True

    def _validate_all(self, nodes: list | None = None) -> None:
        file = str(self.path)
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.entries):
            problems = []
            if not fast_valid(entry.data):
                locate = (lambda rel, node=nodes[index]: _node_line(node, rel)) if nodes else None
                problems = entry_problems(entry.data, file, index, self._field_lines(entry), entry.line, locate)
            name = entry.name
            if isinstance(name, str) and name:
                if name in seen:
                    where = (_node_line(nodes[index], ["name"]) if nodes else None) or entry.line
                    problems.append(Problem(file, where, f"tasks[{index}].name",
                                            f"duplicate name {name!r} (first defined at line {seen[name]}); names must be unique"))
                else:
                    seen[name] = entry.line
            if problems:
                entry.valid = False
                entry.problems = problems
                self.problems.extend(problems)

    def _field_lines(self, entry: Entry) -> dict[str, int]:
        lines = {}
        for number, line in enumerate(entry.text.splitlines()):
            match = re.match(r"^[\s-]*([A-Za-z_]+)\s*:", line)
            if match and match.group(1) not in lines:
                lines[match.group(1)] = entry.line + number - _leading_blank_lines(entry.text)
        return lines

    # ------------------------------------------------------------ reading

    def valid(self) -> Iterator[Entry]:
        return (e for e in self.entries if e.valid)

    def by_name(self) -> dict[str, Entry]:
        return {e.name: e for e in self.entries if e.valid}

    def find(self, name: str) -> Entry | None:
        for entry in self.entries:
            if entry.valid and entry.name == name:
                return entry
        return None

    def text(self) -> str:
        if self.entries and self._empty_fix is not None:
            prefix, suffix = self._empty_fix
            return prefix + "".join(e.text for e in self.entries) + suffix
        return self.prefix + "".join(e.text for e in self.entries) + self.suffix

    def changed(self) -> bool:
        return self._stale is not None or self.text() != self.original

    # ------------------------------------------------------------ editing

    def set_fields(self, entry: Entry, updates: dict[str, Any]) -> None:
        """Set (value) or remove (None) fields of one valid entry, editing only their text."""
        if not entry.valid:
            raise ValueError("invalid entries are never edited")
        new = dict(entry.data)
        for key, value in updates.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = value
        if new == entry.data:
            return
        if not fast_valid(new):
            problems = entry_problems(new, str(self.path), self.entries.index(entry), {}, entry.line)
            if problems:
                raise ValidationFailed(problems)
        index = self.entries.index(entry)
        if self.style.anchors or self.style.aliases:
            self._stale = "the file uses YAML anchors or aliases, which text edits could change elsewhere"
        else:
            try:
                entry.text = _edit_chunk(entry.text, entry.data, updates, self.dash_col, self.key_col)
            except Unrepresentable as exc:
                raise ValidationFailed([Problem(str(self.path), entry.line or None, f"tasks[{index}].{exc.field}",
                                                f"not written: {exc}")]) from None
            except yaml.YAMLError as exc:  # the chunk does not parse on its own: the round-trip path edits it
                self._stale = f"entry {entry.name!r} cannot be edited as text ({str(exc).splitlines()[0]})"
        entry.data = new

    def append(self, data: dict) -> Entry:
        if not fast_valid(data):
            problems = entry_problems(data, str(self.path), len(self.entries), {}, 0)
            if problems:
                raise ValidationFailed(problems)
        if self.entries and not self.entries[-1].text.endswith("\n"):
            self.entries[-1].text += "\n"
        try:
            text = entry_lines(data, self.dash_col, self.key_col)
        except Unrepresentable as exc:
            raise ValidationFailed([Problem(str(self.path), None, f"tasks[{len(self.entries)}].{exc.field}",
                                            f"not written: {exc}")]) from None
        entry = Entry(text, dict(data), 0)
        self.entries.append(entry)
        return entry

    def append_raw(self, entry: Entry) -> None:
        """Append an entry moved from another file (archive), keeping its text."""
        if self.entries and not self.entries[-1].text.endswith("\n"):
            self.entries[-1].text += "\n"
        text = entry.text if entry.text.endswith("\n") else entry.text + "\n"
        dash = re.search(r"(?m)^( *)-", text)
        if isinstance(entry.data, dict) and (dash is None or len(dash.group(1)) != self.dash_col):
            text = entry_lines(entry.data, self.dash_col, self.key_col)  # indentation must match the file's
        self.entries.append(Entry(text, entry.data, 0, entry.valid, entry.problems))

    def remove(self, entries: Iterable[Entry]) -> None:
        drop = {id(e) for e in entries}
        self.entries = [e for e in self.entries if id(e) not in drop]

    def reorder(self, entries: list[Entry]) -> None:
        assert len(entries) == len(self.entries)
        if self.entries and not self.entries[-1].text.endswith("\n"):
            self.entries[-1].text += "\n"
        self.entries = list(entries)

    def save(self) -> bool:
        """Write atomically if the text changed; returns whether it wrote.

        The edited text is checked before it is written: it must load, and read back as exactly the entries
        this object holds (same order, same data, invalid entries byte for byte). Text edits of a plain
        block-style file are checked entry by entry (each edited entry re-parsed on its own); a file whose
        frame changed (flow style, an empty file gaining entries) is re-parsed whole. A file using anchors or
        aliases, or an edit that fails the check, goes through the round-trip path (ruamel, comment-preserving)
        and is re-parsed whole. If that fails too, EditRefused is raised and the file is left as it was."""
        text = self.text()
        if text == self.original and self.exists and self._stale is None:
            return False
        fresh = None
        if self._stale is not None or self.style.anchors or self.style.aliases:
            reason = self._stale or "the file uses YAML anchors or aliases, which text edits could change elsewhere"
            text, fresh = self._round_trip(reason)
        else:
            reason = self._check_edit(text)
            if reason is not None:
                text, fresh = self._round_trip(reason)
            elif self._rewritten or (self._empty_fix is not None and self.entries):
                fresh = self._reparse(text)
                if isinstance(fresh, str):
                    text, fresh = self._round_trip(fresh)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, text)
        self.original = text
        self.exists = True
        self.saved_sha = sha256_bytes(text.encode("utf-8"))
        if fresh is not None:  # adopt the written file's layout; callers keep their Entry objects
            self.prefix, self.suffix, self._empty_fix = fresh.prefix, fresh.suffix, fresh._empty_fix
            self.style, self._rewritten, self._stale = fresh.style, False, None
            self.dash_col, self.key_col = fresh.dash_col, fresh.key_col
            for mine, theirs in zip(self.entries, fresh.entries):
                mine.text, mine.line, mine.source = theirs.text, theirs.line, theirs.source
        for index, entry in enumerate(self.entries):
            entry.origin, entry.verified = index, entry.text
        return True

    # ------------------------------------------------------------ checking edits

    def _check_edit(self, text: str) -> str | None:
        """None if every entry edited since the last read/write re-parses, on its own, as exactly its data and
        keeps the file's block shape; else why not."""
        reason = self._check_duplicates()
        if reason is not None:
            return reason
        last = len(self.entries) - 1
        dash = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*" + " " * self.dash_col + r"-[ \n]")
        for index, entry in enumerate(self.entries):
            if entry.text is entry.verified or entry.text == entry.verified:
                continue
            if not entry.valid and entry.origin is not None and entry.text != (entry.verified or "") + "\n":
                return f"invalid entry {index} would change"  # (a line break added after it is no change)
            if index != last and not entry.text.endswith("\n"):
                return f"entry {index} does not end with a line break"
            if not dash.match(entry.text):
                return f"entry {index} does not start with '-' at column {self.dash_col + 1}"
            try:
                yamlguard.check(entry.text, str(self.path))
                loader = _Loader(entry.text)
                try:
                    data = loader.get_single_data()
                finally:
                    loader.dispose()
            except (ValidationFailed, yaml.YAMLError) as exc:
                return f"entry {index} would not load ({str(exc).splitlines()[0][:200]})"
            if not (isinstance(data, list) and len(data) == 1 and plain(data[0]) == entry.data):
                return f"entry {index} would read back differently"
            head = dash.match(entry.text).end()
            for other_line in entry.text[head:].splitlines()[1:]:  # nothing may leave the entry's indentation
                stripped = other_line.lstrip(" ")
                if stripped and not stripped.startswith("#") and len(other_line) - len(stripped) <= self.dash_col:
                    return f"entry {index} has a line outside its indentation"
        return None

    def _check_duplicates(self) -> str | None:
        """Entries moved around keep their verdicts: a valid entry is still the first with its name, and an
        entry isolated only as a duplicate still has an earlier namesake."""
        seen: set[str] = set()
        for index, entry in enumerate(self.entries):
            name = entry.name
            if not (isinstance(name, str) and name):
                continue
            if name in seen:
                if entry.valid:
                    return f"entry {index} ({name!r}) would come after another entry with its name"
            else:
                seen.add(name)
                if not entry.valid and entry.problems and all(
                        p.message.startswith("duplicate name") for p in entry.problems):
                    return f"entry {index} ({name!r}) would no longer be a duplicate"
        return None

    def _reparse(self, text: str) -> "TaskFile | str":
        """The text parsed whole and compared with the entries held here: the parsed file, or why it differs."""
        try:
            fresh = TaskFile(self.path, text, True)
        except ValidationFailed as exc:
            return f"the edited text would not load ({exc.problems[0].message[:200]})"
        if len(fresh.entries) != len(self.entries):
            return f"the edited text holds {len(fresh.entries)} entries instead of {len(self.entries)}"
        for index, (mine, theirs) in enumerate(zip(self.entries, fresh.entries)):
            if mine.data != theirs.data:
                return f"entry {index} would read back differently"
            if not mine.valid:
                if theirs.valid:
                    return f"invalid entry {index} would read back as valid"
                if mine.origin is not None and (mine.source or "") not in text:
                    return f"invalid entry {index} would not be kept byte for byte"
            elif not theirs.valid:
                return f"entry {index} would read back as invalid"
        return fresh

    def _round_trip(self, reason: str) -> tuple[str, "TaskFile"]:
        """The edit applied through ruamel's round-trip loader to the file as last read or written."""
        from keystone_agents import queuefile

        def refuse(why: str) -> EditRefused:
            return EditRefused([Problem(str(self.path), None, "", f"edit not written, the file is left as it was: "
                                        f"{reason}; the round-trip path failed too: {why}")])

        try:
            doc = queuefile.loads(self.original, self.path, queuefile.TASKS)
        except ValidationFailed as exc:
            raise refuse(exc.problems[0].message[:200]) from None
        seq = doc.entries()
        old = list(seq)
        nodes = []
        for entry in self.entries:
            if entry.origin is not None and entry.origin < len(old) and not entry.valid:
                nodes.append(old[entry.origin])
            elif entry.origin is not None and entry.origin < len(old):
                node = old[entry.origin]
                if not isinstance(node, dict):
                    raise refuse(f"entry {entry.name!r} is not a mapping in the file")
                for key in [k for k in node if k not in entry.data]:
                    queuefile.delete_field(node, key)
                for key, value in entry.data.items():
                    if key not in node or to_plain(node[key]) != value:
                        queuefile.set_field(node, key, value)
                nodes.append(node)
            elif entry.valid and isinstance(entry.data, dict):
                nodes.append(queuefile.new_entry(sorted(entry.data.items(), key=lambda kv: WRITE_ORDER.get(kv[0], 99))))
            else:
                raise refuse("an invalid entry from another file cannot be added")
        if not seq:
            seq.fa.set_block_style()
        seq[:] = nodes
        try:
            text = doc.dumps()
        except Exception as exc:  # noqa: BLE001 - ruamel's emitter raises many kinds; the file stays untouched
            raise refuse(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        fresh = self._reparse(text)
        if isinstance(fresh, str):
            raise refuse(fresh)
        return text, fresh

    def on_disk_changed(self) -> bool:
        """Whether the file on disk differs from what this object last read or wrote."""
        try:
            return sha256_bytes(self.path.read_bytes()) != self.saved_sha
        except FileNotFoundError:
            return self.exists


# ---------------------------------------------------------------- text helpers


def _type_name(value: Any) -> str:
    from keystone_agents.queuefile import _type_name as name  # the same words as every other message

    return name(value)


def _node_line(node: yaml.Node, path: list) -> int | None:
    """1-based line of `path` inside an entry's node: a key's line, a list item's line (as deep as it goes)."""
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag == "tag:yaml.org,2002:str" and key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """Index just past the newline ending the line that contains `index` (or the end of the text)."""
    if index > 0 and text[index - 1] == "\n":
        return index
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def _node_end(node: yaml.Node) -> int:
    """Where a node's own text ends. libyaml puts a block collection's end mark at the next token (the next
    entry's dash, even), so for those the end of the last child counts."""
    if isinstance(node, yaml.ScalarNode) or node.flow_style or not node.value:
        return node.end_mark.index
    last = node.value[-1]
    return _node_end(last[1] if isinstance(node, yaml.MappingNode) else last)


def _content_end(text: str, node: yaml.Node) -> int:
    return _line_end(text, _node_end(node))


def _leading_blank_lines(text: str) -> int:
    count = 0
    for line in text.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            break
        count += 1
    return count


def _edit_chunk(chunk: str, old: dict, updates: dict[str, Any], dash_col: int, key_col: int) -> str:
    """Apply field updates to one entry chunk's text."""
    loader = _Loader(chunk)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    mapping = node.value[0] if isinstance(node, yaml.SequenceNode) and node.value else None
    if not isinstance(mapping, yaml.MappingNode) or mapping.flow_style:
        merged = {k: v for k, v in {**old, **updates}.items() if v is not None}
        dash = chunk.rfind("-", 0, mapping.start_mark.index) if mapping is not None else -1
        lead = chunk[: _line_start(chunk, dash)] if dash >= 0 else ""
        return lead + entry_lines(merged, dash_col, key_col)
    text = chunk
    # Edit from the end of the chunk backwards so earlier marks stay valid.
    positions = {k.value: (k, v) for k, v in mapping.value}
    edits: list[tuple[int, int, str]] = []
    appended: list[str] = []
    col = mapping.start_mark.column
    for key, value in updates.items():
        if key in positions:
            k_node, v_node = positions[key]
            if value is None:
                edits.append(_deletion(text, mapping, k_node, v_node))
            else:
                start, stop = v_node.start_mark.index, _node_end(v_node)
                replacement = field_scalar(key, value)
                if stop > start and text[stop - 1] == "\n":  # block scalar: keep the line break
                    replacement += "\n"
                if start == stop and not isinstance(v_node, yaml.ScalarNode):
                    replacement = " " + replacement
                edits.append((start, stop, replacement))
        elif value is not None:
            appended.append(f"{' ' * col}{key}: {field_scalar(key, value)}\n")
    if appended:
        last_value = mapping.value[-1][1]
        at = _line_end(text, _node_end(last_value))
        if at == len(text) and not text.endswith("\n"):
            appended[0] = "\n" + appended[0]
        edits.append((at, at, "".join(appended)))
    for start, stop, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        text = text[:start] + replacement + text[stop:]
    return text


def _deletion(text: str, mapping: yaml.MappingNode, k_node: yaml.Node, v_node: yaml.Node) -> tuple[int, int, str]:
    pairs = mapping.value
    index = next(i for i, (k, _) in enumerate(pairs) if k is k_node)
    if index + 1 < len(pairs):
        # up to the next key: the next key takes this key's place (also right after "- ")
        return (k_node.start_mark.index, pairs[index + 1][0].start_mark.index, "")
    start = _line_start(text, k_node.start_mark.index)
    if text[start: k_node.start_mark.index].strip():  # key shares its line with "- ": keep the dash
        start = k_node.start_mark.index
    return (start, _line_end(text, _node_end(v_node)), "")


def read_entries(path: Path, key: str = "tasks") -> tuple[list[dict], list[Problem]]:
    """All mapping entries under `key` of a queue file, unvalidated (dedup against the archive, lookups), and
    the problems that kept the file (or some items) from being read. Never raises for what the file holds."""
    path = Path(path)
    try:
        text = yamlguard.read(path)
        if not text.strip():
            return [], []
        yamlguard.check(text, str(path))
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except FileNotFoundError:
        return [], []
    except ValidationFailed as exc:
        return [], exc.problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return [], [Problem(str(path), mark.line + 1 if mark else None, "", f"not valid YAML: {exc.problem or exc}")]
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError, TypeError) as exc:
        return [], [Problem(str(path), None, "", f"cannot be read: {type(exc).__name__}: {str(exc)[:200]}")]
    except OSError as exc:
        return [], [Problem(str(path), None, "", f"cannot be read: {exc.strerror or exc}")]
    if not isinstance(data, dict):
        return [], [Problem(str(path), 1, "", f"expected a mapping with the key {key!r}, got {_type_name(plain(data))}")]
    items = data.get(key)
    if items is None:
        return [], []
    if not isinstance(items, list):
        return [], [Problem(str(path), None, key, f"expected a list of entries, got {_type_name(plain(items))}")]
    return [plain(i) for i in items if isinstance(i, dict)], []  # other items: `validate` reports them


def read_plain(path: Path, key: str = "tasks") -> list[dict]:
    """The entries of `read_entries`, without its problems (a file that cannot be read has none)."""
    return read_entries(path, key)[0]
