"""The gate every queue-file reader passes before a YAML parser builds anything from the text.

TASKS.yaml, PROJECTS.yaml, SCHEDULES.yaml, ISSUES.yaml and TASKS.archive.yaml are written by humans, by
models and by our own writer, so they may hold anything. `decode` and `check` turn every kind of hostile
text into `FILE:LINE: FIELD: message` problems instead of an exception or a hang:

* not UTF-8, or a byte-order mark: reported with the byte offset (and line);
* control characters (NUL, ESC, DEL, C1 ...), which YAML forbids in a document: reported with line and column;
* YAML directives (`%YAML`, `%TAG`) and tags (`!!python/...`, `!foo`): refused — queue files never need them;
* more than one document in the file;
* nesting deeper than `MAX_DEPTH`, a scalar longer than `MAX_SCALAR`, a number longer than `MAX_NUMBER`
  characters (Python refuses to convert ints above 4,300 digits, and nothing in a queue needs them);
* aliases whose expansion exceeds `ALIAS_FACTOR` times the nodes actually written (an "alias bomb" of a few
  hundred bytes expands to billions of nodes): refused before anything expands them;
* duplicate keys in a mapping (libyaml would silently keep the last one, ruamel refuses the file: both
  readers now report the same problem), and keys that are lists or mappings;
* tabs outside quoted values and comments, and the Unicode line breaks NEL/U+2028/U+2029 (libyaml and
  ruamel disagree about them);
* and, as a last resort, a wall-time bound (`DEADLINE`) on the scan itself.

The scan walks libyaml's event stream once (C speed parser, no recursion, nothing expanded), so after it
passes, building the document is linear in the file's size. It also reports the file's `Style`: whether it
uses anchors, aliases or flow collections, which the fast TASKS.yaml editor needs to know.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import yaml

from keystone_agents.problems import Problem, ValidationFailed, field_path

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_DEPTH = 64  # nested mappings/lists; a queue entry needs 3
MAX_SCALAR = 1_000_000  # characters in one scalar (a long email body fits)
MAX_NUMBER = 100  # characters of a plain scalar that reads as a number
ALIAS_FACTOR = 10  # expanded nodes may be at most this multiple of the nodes written (+ ALIAS_SLACK)
ALIAS_SLACK = 1_000
DEADLINE = 10.0  # seconds; the scan stops and refuses the file after this long
MAX_REPORTED = 10  # problems of one kind reported per file (a binary file has thousands)

BOM = "\ufeff"
# Everything outside YAML's printable set (YAML 1.2 §5.1) that a str can hold: C0 controls except TAB, LF and
# CR; DEL; C1 controls; U+FEFF inside the text; the non-characters U+FFFE and U+FFFF. Also the Unicode line
# breaks NEL, U+2028 and U+2029: YAML 1.1 (libyaml) counts them as line breaks, YAML 1.2 (ruamel) does not, so
# the readers would disagree about the file (written escaped in a double-quoted string they are fine).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\ufffe\uffff\ud800-\udfff\u2028\u2029]")
_NUMBERISH = re.compile(r"^[-+]?[0-9.][0-9a-fA-FxXoObB_:.eE+-]*$")


@dataclass(frozen=True)
class Style:
    """What the text uses beyond plain block style (the fast editor edits only plain block style in place)."""

    anchors: bool = False
    aliases: bool = False
    flow: bool = False
    documents: int = 0

    @property
    def plain_block(self) -> bool:
        return not (self.anchors or self.aliases or self.flow)


def _char_name(ch: str) -> str:
    names = {"\x00": "NUL", "\x1b": "ESC", "\x7f": "DEL", "\ufeff": "byte-order mark U+FEFF", "\x08": "BS",
             "\x0b": "VT", "\x0c": "FF", "\x85": "NEL (U+0085)", "\u2028": "LINE SEPARATOR (U+2028)",
             "\u2029": "PARAGRAPH SEPARATOR (U+2029)"}
    return names.get(ch, f"U+{ord(ch):04X}")


def decode(raw: bytes, file: str) -> str:
    """The file's bytes as text; a BOM or invalid UTF-8 is a problem with its byte offset."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ValidationFailed([Problem(file, 1, "", "byte 0: starts with a UTF-8 byte-order mark (BOM); "
                                        "save the file as UTF-8 without a BOM")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start: exc.start + 4].hex(" ")
        raise ValidationFailed([Problem(file, line, "", f"byte {exc.start}: not UTF-8 text ({exc.reason}: {bad})")]) from None


def read(path, file: str | None = None) -> str:
    """Read and decode a file (FileNotFoundError passes through: callers decide what a missing file means)."""
    from pathlib import Path

    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ValidationFailed([Problem(file or str(path), None, "", "is a directory, not a file")]) from None
    except PermissionError:
        raise ValidationFailed([Problem(file or str(path), None, "", "cannot be read: permission denied")]) from None
    except FileNotFoundError:
        raise
    except OSError as exc:  # a symlink loop, an I/O error: one clear line, not a traceback
        raise ValidationFailed([Problem(file or str(path), None, "", f"cannot be read: {exc.strerror or exc}")]) from None
    return decode(raw, file or str(path))


def control_problems(text: str, file: str) -> list[Problem]:
    problems = []
    for match in _CONTROL.finditer(text):
        start = match.start()
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        offset = len(text[:start].encode("utf-8", "surrogatepass"))
        problems.append(Problem(file, line, "", f"byte {offset} (column {column}): control character "
                                f"{_char_name(match.group())} is not allowed in YAML; remove it or write it "
                                f"escaped in a double-quoted string"))
        if len(problems) >= MAX_REPORTED:
            break
    return problems


class _Frame:
    __slots__ = ("kind", "anchor", "start", "index", "key", "keys", "expect_key")

    def __init__(self, kind: str, anchor: str | None, start: int):
        self.kind, self.anchor, self.start = kind, anchor, start
        self.index = -1
        self.key: object = None
        self.keys: dict[str, int] | None = {} if kind == "map" else None
        self.expect_key = True


def check(text: str, file: str, *, deadline: float = DEADLINE) -> Style:
    """Scan the text; raise ValidationFailed with every problem found, else return its Style."""
    problems = control_problems(text, file)
    if problems:
        raise ValidationFailed(problems)
    problems = []
    anchors: dict[str, int] = {}  # anchor → expanded node count of the anchored node
    stack: list[_Frame] = []
    written = expanded = documents = 0
    used_anchor = used_alias = used_flow = False
    limit_start = time.monotonic()
    scalar_spans: list[tuple[int, int]] | None = [] if "\t" in text else None  # only needed to place tabs

    def add(line: int, message: str, path: list | None = None) -> None:
        problems.append(Problem(file, line, field_path(path if path is not None else _path(stack)), message))

    parser = _Loader(text)
    try:
        while True:
            event = parser.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                break
            written += 1
            if not written & 0x3FF and time.monotonic() - limit_start > deadline:
                add(event.start_mark.line + 1, f"reading took longer than {deadline:g} s; refusing the file", [])
                break
            line = event.start_mark.line + 1
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    add(line, "more than one YAML document in the file (a second `---`); a queue file is one document", [])
                    break
                if event.version or event.tags:
                    add(line, "YAML directives (%YAML, %TAG) are not allowed in queue files; remove the line", [])
                    break
                continue
            if isinstance(event, (yaml.DocumentEndEvent, yaml.StreamStartEvent)):
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                if frame.anchor is not None:
                    anchors[frame.anchor] = expanded - frame.start + 1
                continue
            # a node: scalar, alias, or the start of a collection
            parent = stack[-1] if stack else None
            is_key = False
            if parent is not None:
                if parent.kind == "seq":
                    parent.index += 1
                else:
                    is_key = parent.expect_key
                    parent.expect_key = not parent.expect_key
            path = _path(stack, is_key)
            if isinstance(event, yaml.AliasEvent):
                used_alias = True
                if is_key:
                    add(line, f"alias *{event.anchor} used as a key; keys must be plain text", path)
                    break
                size = anchors.get(event.anchor)
                if size is None:
                    add(line, f"alias *{event.anchor} refers to no anchor defined before it", path)
                    break
                expanded += size
                if expanded > ALIAS_FACTOR * len(text) + ALIAS_SLACK:  # certainly over the limit: stop early
                    add(line, _bomb_message(), path)
                    break
                if is_key:
                    parent.key = f"*{event.anchor}"
                continue
            expanded += 1
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                used_anchor = True
                if anchor in anchors or any(f.anchor == anchor for f in stack):
                    add(line, f"anchor &{anchor} is defined twice; give each anchor its own name", path)
                    break
            tag = getattr(event, "tag", None)
            if is_key and anchor is not None:
                add(line, f"anchor &{anchor} on a key; keys must be plain text", path)
                break
            if tag is not None:
                add(line, f"YAML tag {tag} is not allowed in queue files; remove it (values are plain strings, "
                          "numbers, lists and mappings)", path)
                break
            if isinstance(event, yaml.ScalarEvent):
                value = event.value
                if scalar_spans is not None and event.style:  # quoted or block (plain: None or "")
                    scalar_spans.append((event.start_mark.index, event.end_mark.index))
                if len(value) > MAX_SCALAR:
                    add(line, f"value is {len(value):,} characters long; at most {MAX_SCALAR:,} are allowed", path)
                elif not event.style and value == "=":  # YAML 1.1's "value" key: readers disagree about it
                    add(line, "a bare `=` is read differently by YAML readers; quote it (\"=\")", path)
                elif not event.style and len(value) > MAX_NUMBER and _NUMBERISH.match(value):
                    add(line, f"number is {len(value):,} characters long; at most {MAX_NUMBER} are allowed "
                              "(quote it if it is text)", path)
                if anchor is not None:
                    anchors[anchor] = 1
                if is_key and not event.style and value in ("", "~", "null", "Null", "NULL"):
                    add(line, "a key without a name (empty or null)", path)
                    break
                if is_key:
                    seen = parent.keys.get(value)
                    if seen is not None:
                        add(line, f"duplicate key {value!r} (first at line {seen}); a key may appear only once", path + [value])
                    else:
                        parent.keys[value] = line
                    parent.key = value
                continue
            # MappingStart / SequenceStart
            if event.flow_style:
                used_flow = True
            if is_key:
                add(line, "a list or mapping used as a key (`? ...`); keys must be plain text", path)
                break
            if len(stack) >= MAX_DEPTH:
                add(line, f"nested more than {MAX_DEPTH} levels deep", path)
                break
            stack.append(_Frame("map" if isinstance(event, yaml.MappingStartEvent) else "seq", anchor, expanded))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.append(Problem(file, mark.line + 1 if mark else None, "", f"not valid YAML: {exc.problem or exc}"))
    except yaml.YAMLError as exc:
        problems.append(Problem(file, None, "", f"not valid YAML: {exc}"))
    finally:
        parser.dispose()
    if not problems and expanded > ALIAS_FACTOR * written + ALIAS_SLACK:
        problems.append(Problem(file, None, "", _bomb_message()))
    if not problems and scalar_spans is not None:
        problems.extend(_tab_problems(text, file, scalar_spans))
    if problems:
        raise ValidationFailed(problems[:MAX_REPORTED])
    return Style(used_anchor, used_alias, used_flow, documents)


def _tab_problems(text: str, file: str, spans: list[tuple[int, int]]) -> list[Problem]:
    """Tabs outside quoted and block scalars and comments. libyaml accepts some (`key:<TAB>value`, a tab after
    or inside a plain value) that ruamel refuses, so the two readers would disagree about the file: both
    refuse it instead."""
    import bisect

    starts = [start for start, _ in spans]
    problems = []
    for match in re.finditer("\t", text):
        at = match.start()
        i = bisect.bisect_right(starts, at) - 1
        if i >= 0 and spans[i][0] <= at < spans[i][1]:
            continue
        line_start = text.rfind("\n", 0, at) + 1
        before = text[line_start:at]
        comment = re.search(r"(^|\s)#", before)
        if comment and not any(s <= line_start + comment.end() - 1 < e for s, e in spans[max(i - 3, 0): i + 1]):
            continue
        line = text.count("\n", 0, at) + 1
        problems.append(Problem(file, line, "", f"column {at - line_start + 1}: a tab outside a quoted value; "
                                "YAML readers disagree about such tabs, use spaces (or quote the value)"))
        if len(problems) >= MAX_REPORTED:
            break
    return problems


def _bomb_message() -> str:
    return (f"aliases expand to more than {ALIAS_FACTOR} times the nodes written (an alias bomb?); "
            "write the values out instead of using *aliases")


def _path(stack: list[_Frame], is_key: bool = False) -> list:
    """The path of the node about to start (its parent's current key or index)."""
    parts: list = []
    for i, frame in enumerate(stack):
        last = i == len(stack) - 1
        if frame.kind == "seq":
            parts.append(frame.index)
        elif not (last and is_key):
            parts.append(frame.key if isinstance(frame.key, (str, int)) else str(frame.key))
    return parts


def load_text(path, file: str | None = None) -> tuple[str, Style]:
    """Read, decode and check a file: the text and its style, or ValidationFailed."""
    name = file or str(path)
    text = read(path, name)
    return text, check(text, name)
