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

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from keystone_agents.atomic import write_atomic
from keystone_agents.plain import to_plain
from keystone_agents.problems import Problem, ValidationFailed

try:  # libyaml; the pure-Python loader is a slow but correct fallback
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

STATUSES = ("pending", "in_progress", "completed", "blocked")
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
STRING_FIELDS = ("project", "source", "source_ref", "profile", "model", "fallback_model", "blocked_reason")
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
_YAML_BREAKS = re.compile("[\u2028\u2029\u0085\ufeff]")
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
    text = str(value)
    if _PLAIN_OK.match(text) and text.lower() not in _YAML_WORDS:
        return text
    # A JSON string is a YAML double-quoted scalar; escape what YAML would fold or reject.
    out = _encode_string(text)
    if _YAML_BREAKS.search(out):
        out = out.replace("\u2028", "\\L").replace("\u2029", "\\P").replace("\u0085", "\\N").replace("\ufeff", "\\uFEFF")
    return out


def entry_lines(entry: dict, dash_col: int = 2, key_col: int = 4) -> str:
    """A new block-style entry, keys in the canonical order."""
    keys = sorted(entry, key=lambda k: WRITE_ORDER.get(k, 99))
    lines = []
    for i, key in enumerate(keys):
        prefix = (" " * dash_col + "-" + " " * (key_col - dash_col - 1)) if i == 0 else " " * key_col
        lines.append(f"{prefix}{key}: {scalar(entry[key])}\n")
    return "".join(lines)


# ---------------------------------------------------------------- validation


def fast_valid(entry: Any) -> bool:
    """True only for entries the tasks schema certainly accepts (False means: ask jsonschema)."""
    if not isinstance(entry, dict):
        return False
    for key, value in entry.items():
        if key == "name":
            if not (isinstance(value, str) and NAME_RE.match(value)):
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
        elif key == "workflow":
            if not (isinstance(value, str) and value):
                return False
        elif key == "needs":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
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


def entry_problems(entry: Any, file: str, index: int, lines: dict[str, int], line: int) -> list[Problem]:
    """Schema problems of one entry, each at the line of its field."""
    if fast_valid(entry):
        return []
    from keystone_agents.queuefile import _describe_error, _field_path  # lazy: jsonschema is slow to import
    from keystone_agents.schemas import load_schema, validator

    problems = []
    schema = load_schema("tasks")
    for error in sorted(validator("tasks", "task").iter_errors(entry), key=lambda e: list(e.absolute_path)):
        for rel, message in _describe_error(error, schema):
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
        self.saved_sha = sha256_bytes(text.encode("utf-8"))
        self._parse(text)

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | Path, missing_ok: bool = True) -> "TaskFile":
        path = Path(path)
        try:
            raw = path.read_bytes()
            exists = True
        except FileNotFoundError:
            if not missing_ok:
                raise ValidationFailed([Problem(str(path), None, "", "file does not exist")]) from None
            raw, exists = b"", False
        except OSError as exc:  # a directory, no permission, a symlink loop, an I/O error
            raise ValidationFailed([Problem(str(path), None, "", unreadable(exc))]) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed([Problem(str(path), None, "", f"not UTF-8 text ({exc.reason})")]) from None
        return cls(path, text, exists)

    def _fail(self, line: int | None, fld: str, message: str) -> None:
        raise ValidationFailed([Problem(str(self.path), line, fld, message)])

    def _parse(self, text: str) -> None:
        if not text.strip():
            self.prefix, self.suffix = "", ""
            self._empty_fix = ("tasks:\n", "")
            return
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            data = plain(loader.construct_document(root)) if root is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self._fail(mark.line + 1 if mark else None, "", f"not valid YAML: {exc.problem or exc}")
        except yaml.YAMLError as exc:
            self._fail(None, "", f"not valid YAML: {exc}")
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
                seq_node = value_node
        if seq_node is None:
            wrong.append(Problem(str(self.path), 1, "tasks", "required top-level key 'tasks' is missing"))
        if wrong:
            raise ValidationFailed(wrong)
        items = data.get("tasks")
        if isinstance(seq_node, yaml.ScalarNode) and items is None:  # `tasks:` with nothing under it
            end = _line_end(text, root.value[0][0].end_mark.index)
            self.prefix, self.suffix = text, ""
            self._empty_fix = (text[:end], text[end:])
            return
        if not isinstance(seq_node, yaml.SequenceNode):
            self._fail(seq_node.start_mark.line + 1, "tasks", f"expected a list of entries, got {_type_name(items)}")
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
        self._validate_all()

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
            self.entries.append(Entry(text[start:stop], data, node.start_mark.line + 1))
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
            self.entries.append(Entry(chunk, data, node.start_mark.line + 1))

    def _validate_all(self) -> None:
        file = str(self.path)
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.entries):
            problems = []
            if not fast_valid(entry.data):
                problems = entry_problems(entry.data, file, index, self._field_lines(entry), entry.line)
            name = entry.name
            if isinstance(name, str) and name:
                if name in seen:
                    problems.append(Problem(file, entry.line, f"tasks[{index}].name",
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
        return self.text() != self.original

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
        entry.text = _edit_chunk(entry.text, entry.data, updates, self.dash_col, self.key_col)
        entry.data = new

    def append(self, data: dict) -> Entry:
        if not fast_valid(data):
            problems = entry_problems(data, str(self.path), len(self.entries), {}, 0)
            if problems:
                raise ValidationFailed(problems)
        if self.entries and not self.entries[-1].text.endswith("\n"):
            self.entries[-1].text += "\n"
        entry = Entry(entry_lines(data, self.dash_col, self.key_col), dict(data), 0)
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
        """Write atomically if the text changed; returns whether it wrote."""
        text = self.text()
        if text == self.original and self.exists:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, text)
        self.original = text
        self.exists = True
        self.saved_sha = sha256_bytes(text.encode("utf-8"))
        return True

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
                replacement = scalar(value)
                if stop > start and text[stop - 1] == "\n":  # block scalar: keep the line break
                    replacement += "\n"
                if start == stop and not isinstance(v_node, yaml.ScalarNode):
                    replacement = " " + replacement
                edits.append((start, stop, replacement))
        elif value is not None:
            appended.append(f"{' ' * col}{key}: {scalar(value)}\n")
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


def unreadable(exc: OSError) -> str:
    """One clear line for a queue file that cannot be read."""
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file: move it aside"
    return f"cannot read: {exc.strerror or exc}"


def read_plain(path: Path, key: str = "tasks") -> list[dict]:
    """All mapping entries under `key` of a queue file, unvalidated (dedup against the archive, lookups)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError):
        return []
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return []
    items = data.get(key) if isinstance(data, dict) else None
    return [plain(i) for i in items if isinstance(i, dict)] if isinstance(items, list) else []
