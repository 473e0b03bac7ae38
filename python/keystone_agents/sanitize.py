"""Untrusted text made safe at the boundary, once.

Everything that flows in from outside (source items, email headers and bodies, calendar events, schedules,
task fields typed by a human or `task add`) passes through this module before it is written to a queue file,
put in a prompt, or used to build a path or an argv:

* `clean_text` is the one normalisation: invalid UTF-8 is replaced (U+FFFD), a lone surrogate is refused
  (`UnsafeText`, naming the field), NUL and the C0/C1 control characters (and DEL, U+FEFF, U+FFFE, U+FFFF) are
  removed, except tab and newline in multi-line text; CR LF and lone CR become LF; one-line fields get every
  line break and tab as a space; the length is capped (in UTF-8 bytes, cut at a character boundary).
* `clean_task` applies it to every field of a task entry (names 64, one-line fields 1 KiB, descriptions 16 KiB;
  a longer description goes to a file in the agent space, and the task says where).
* `slug` / `bounded_name` make kebab-case names of at most `NAME_MAX` characters.
* `inside` checks that a path built from a name stays inside its directory (no `..`, no absolute path, no
  symlink leading out), and says which field was refused.
* `command_line` is how a command line shown to a model or a human is written: `shlex.join` of an argv.
* `MODEL_RE`, `NAME_RE`, `WORKFLOW_RE` are the shapes of values that reach argv; the JSON Schemas carry the same
  patterns (a test keeps them equal), so neither the config loader nor a queue file accepts a model that a CLI
  could read as an option.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Mapping

NAME_MAX = 64  # task, schedule, project, profile names
LINE_MAX = 1024  # bytes of a one-line field: titles, subjects, addresses, source refs, reasons
DESCRIPTION_MAX = 16 * 1024  # bytes of a description; the rest goes to a file
ARGUMENT_MAX = 128 * 1024 - 1  # Linux MAX_ARG_STRLEN (131072) less the terminating NUL
# Longer prompts are not put in argv at all (providers pass them on stdin as each CLI documents); the margin
# keeps the whole argv + environment well inside ARG_MAX too.
PROMPT_ARGUMENT_MAX = 100 * 1024

NAME_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+\[\]-]*$"
WORKFLOW_PATTERN = r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$"
NAME_RE = re.compile(NAME_PATTERN)
MODEL_RE = re.compile(MODEL_PATTERN)
WORKFLOW_RE = re.compile(WORKFLOW_PATTERN)
MODEL_MAX = 128

# Removed from every field: C0 controls, DEL, C1 controls, and code points YAML cannot print (BOM, U+FFFE/F).
_CONTROLS_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ufeff\ufffe\uffff]")
_CONTROLS_MULTI = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ufffe\uffff]")
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85]")
_SURROGATE = re.compile("[\ud800-\udfff]")

# Task fields by kind (the tasks schema's fields; anything else is treated as one-line text).
NAME_FIELDS = ("name",)
MULTILINE_FIELDS = ("description",)
LIST_FIELDS = ("needs",)


class UnsafeText(ValueError):
    """A value that cannot be made safe (a lone surrogate, a name that is not one); `field` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class PathEscape(ValueError):
    """A path built from a name would leave its directory; `field` names the value."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


# ---------------------------------------------------------------- text


def decode(raw: bytes | str) -> str:
    """Bytes from outside → text, invalid UTF-8 replaced by U+FFFD (str passes through)."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return raw


def from_escaped(text: str) -> str:
    """Text decoded with `surrogateescape` (the email package's undecodable header bytes, os.fsdecode) →
    text with those bytes replaced by U+FFFD: they were invalid UTF-8, not lone surrogates someone sent."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if _SURROGATE.search(text) else text


def cap(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def clean_text(value: Any, *, field: str, multiline: bool = False, limit: int | None = None,
               lenient: bool = False) -> str:
    """THE normalisation of one untrusted value (see the module doc). Raises UnsafeText for a lone surrogate,
    unless `lenient` (text the runtime must keep whatever it holds, e.g. a provider's message): then U+FFFD."""
    if value is None:
        return ""
    text = decode(value) if isinstance(value, (bytes, str)) else str(value)
    found = _SURROGATE.search(text)
    if found and lenient:
        text = _SURROGATE.sub("\ufffd", text)
    elif found:
        raise UnsafeText(field, f"contains a lone surrogate U+{ord(found.group()):04X} at character {found.start()} "
                                "(not valid Unicode text)")
    if multiline:
        text = _LINE_BREAKS.sub("\n", text)
        text = _CONTROLS_MULTI.sub("", text)
    else:
        text = _LINE_BREAKS.sub(" ", text).replace("\t", " ").replace("\n", " ")
        text = _CONTROLS_ONE_LINE.sub("", text)
    text = text.strip()
    limit = limit if limit is not None else (DESCRIPTION_MAX if multiline else LINE_MAX)
    return cap(text, limit).rstrip() if len(text) * 4 > limit else text


def clean_description(value: Any, *, field: str = "description", spill_dir: Path | None = None,
                      lenient: bool = False) -> str:
    """A multi-line text of at most DESCRIPTION_MAX bytes. A longer one is written whole to `spill_dir`
    (named by its SHA-256, so the same text is one file) and the description keeps its beginning and says
    where the rest is; without `spill_dir` the rest is cut and the description says how much."""
    text = clean_text(value, field=field, multiline=True, limit=1 << 62, lenient=lenient)
    size = len(text.encode("utf-8"))
    if size <= DESCRIPTION_MAX:
        return text
    if spill_dir is not None:
        from keystone_agents.atomic import write_atomic

        path = Path(spill_dir) / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()[:24]}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            write_atomic(path, text + "\n")
        note = f"\n\n[The full text ({size} bytes) is in {path}; read it there. Only its beginning is shown here.]"
    else:
        note = f"\n\n[Cut: {size - DESCRIPTION_MAX} more bytes were not kept.]"
    head = cap(text, DESCRIPTION_MAX - len(note.encode("utf-8"))).rstrip()
    return head + note


def clean_task(entry: Mapping[str, Any], *, spill_dir: Path | None = None, lenient: bool = False) -> dict[str, Any]:
    """Every field of a task entry (new, or the fields of an update) made safe: names must already be names
    (UnsafeText otherwise), descriptions are multi-line and capped (spilled to `spill_dir`), lists are lists
    of names, every other string is one line of at most LINE_MAX bytes. None (remove the field) is kept."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if value is None or isinstance(value, (bool, int, float)):
            out[key] = value
        elif key in NAME_FIELDS:
            out[key] = check_name(clean_text(value, field=key, limit=NAME_MAX * 4), field=key)
        elif key in MULTILINE_FIELDS:
            out[key] = clean_description(value, field=key, spill_dir=spill_dir, lenient=lenient)
        elif isinstance(value, (list, tuple)):
            out[key] = [clean_text(v, field=f"{key}[{i}]", lenient=lenient) for i, v in enumerate(value)]
        else:
            out[key] = clean_text(value, field=key, lenient=lenient)
    return out


# ---------------------------------------------------------------- names


def slug(text: str, limit: int = NAME_MAX) -> str:
    """kebab-case of any text (ASCII letters and digits, single dashes), at most `limit` characters, cut at
    a dash where one is near the end."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    if len(text) > limit:
        cut = text[:limit]
        text = cut.rsplit("-", 1)[0] if "-" in cut[limit // 2:] else cut
    return text.strip("-")


def bounded_name(base: str, suffix: str = "", limit: int = NAME_MAX) -> str:
    """`base` + `suffix` (e.g. "-2026-01-05") within `limit` characters: the base is shortened, never the
    suffix (which is what keeps the name unique)."""
    room = max(1, limit - len(suffix))
    return (base[:room].rstrip("-") or base[:1]) + suffix


def check_name(value: str, *, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value) or len(value) > NAME_MAX:
        raise UnsafeText(field, f"{value!r} is not a name (kebab-case: lowercase letters, digits, single dashes; "
                                f"at most {NAME_MAX} characters)")
    return value


def check_model(value: str, *, field: str = "model") -> str:
    if not isinstance(value, str) or not MODEL_RE.match(value) or len(value) > MODEL_MAX:
        raise UnsafeText(field, f"{value!r} is not a model name (letters, digits and . _ : / @ + [ ] -, starting "
                                f"with a letter or digit, so no CLI can read it as an option)")
    return value


# ---------------------------------------------------------------- paths


def inside(base: Path, *parts: str, field: str) -> Path:
    """`base / parts…`, refused (PathEscape) when a part is empty, absolute, `.`/`..`, holds a NUL, or the
    result — symlinks resolved — is not inside `base`."""
    for part in parts:
        text = str(part)
        if not text or "\x00" in text:
            raise PathEscape(field, f"{text!r} is empty or holds a NUL byte")
        if text.startswith(("/", "\\")) or Path(text).is_absolute():
            raise PathEscape(field, f"{text!r} is an absolute path")
        if any(p in ("..", ".") for p in re.split(r"[/\\]", text)):
            raise PathEscape(field, f"{text!r} contains '.' or '..'")
    root = Path(base).resolve()
    target = Path(base).joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise PathEscape(field, f"{'/'.join(map(str, parts))!r} leads outside {base} (to {target})")
    return Path(base).joinpath(*parts)


# ---------------------------------------------------------------- command lines


def command_line(argv: Iterable[str]) -> str:
    """A command line shown to a model or a human: every argument quoted so a shell reads back exactly argv."""
    return shlex.join([str(a) for a in argv])


def fits_in_argument(text: str) -> bool:
    """Whether `text` may travel as one argv element (else: stdin or a file)."""
    return len(text) <= PROMPT_ARGUMENT_MAX // 4 or len(text.encode("utf-8")) <= PROMPT_ARGUMENT_MAX
