"""Hand-made hostile queue files, and a mutator that makes more: what a human, a model or an attacker may
write into TASKS.yaml and its siblings. Used by the fuzz tests (tests/unit/test_queue_fuzz.py), the CLI
tests (tests/integration/test_hostile_files.py) and the larger run (benchmarks/queue_fuzz.py)."""

from __future__ import annotations

import random

GOOD = b"""\
# the queue
tasks:
  # first
  - name: alpha
    description: "Do A"   # trailing comment
    status: pending
    created_at: "2025-06-01T10:00:00Z"
    needs:
      - beta
  - {name: beta, description: B, status: completed, completed_at: "2025-06-02T10:00:00Z"}
  - name: gamma
    description: |
      multi
      line
    status: blocked
    blocked_reason: waiting
  - name: ""
    description: an invalid entry, kept verbatim
    status: pending
# end
"""


def _bomb(levels: int = 9, width: int = 9) -> bytes:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"tasks: [{{name: bomb, description: *a{levels - 1}, status: pending}}]")
    return ("\n".join(lines) + "\n").encode()


def _deep_block(depth: int) -> bytes:
    lines = ["tasks:", "  - name: deep", "    description: d", "    status: pending", "    extra:"]
    for level in range(depth):
        lines.append("      " + "  " * level + f"k{level}:")
    lines[-1] += " end"
    return ("\n".join(lines) + "\n").encode()


def _entry(extra: str) -> bytes:
    return f"tasks:\n  - name: one\n    description: d\n    status: pending\n{extra}".encode()


CORPUS: dict[str, bytes] = {
    "alias-bomb": _bomb(),
    "deep-nesting-flow": b"tasks: [{name: deep, description: " + b"[" * 5000 + b"]" * 5000 + b", status: pending}]\n",
    "deep-nesting-block": _deep_block(200),
    "long-number": _entry("    source_ref: " + "9" * 5000 + "\n"),
    "long-number-key": b"tasks:\n  - " + b"1" * 5000 + b": x\n",
    "nul-byte": _entry("    model: a\x00b\n"),
    "del-byte": _entry("    model: a\x7fb\n"),
    "esc-byte": _entry("    model: \x1b[31mred\n"),
    "invalid-utf8": b"tasks:\n  - name: one\n    description: caf\xc3\x28\n    status: pending\n",
    "binary": bytes(range(256)) * 4,
    "bom": b"\xef\xbb\xbf" + GOOD,
    "tag-python": b"tasks:\n  - !!python/object/apply:os.system ['true']\n",
    "tag-local": _entry("    model: !secret x\n"),
    "directive-yaml": b"%YAML 1.1\n---\n" + GOOD,
    "directive-tag": b"%TAG ! tag:example.com,2000:\n---\n" + GOOD,
    "flow-style": b"tasks: [{name: one, description: d, status: pending}, {name: two, description: e, status: completed}]\n",
    "top-level-list": b"- name: one\n  description: d\n  status: pending\n",
    "top-level-scalar": b"just some text\n",
    "multi-document": GOOD + b"---\n" + GOOD,
    "duplicate-keys": _entry("    status: completed\n"),
    "tabs": b"tasks:\n\t- name: one\n\t  description: d\n",
    "empty": b"",
    "huge-scalar": _entry("    model: " + "x" * 1_100_000 + "\n"),
    "undefined-alias": _entry("    needs: *nowhere\n"),
    "anchors": b"tasks:\n  - name: one\n    description: &d shared text\n    status: pending\n"
               b"  - name: two\n    description: *d\n    status: pending\n",
    "tasks-not-a-list": b"tasks: 5\n",
    "far-future": _entry('    completed_at: "9999-12-31T23:59:59Z"\n').replace(b"pending", b"completed"),
    "ancient-offset": _entry('    created_at: "0001-01-01T00:00:00+01:00"\n'),
    "zero-date": _entry("    created_at: 0000-00-00\n"),
    "status-list": b"tasks:\n  - name: one\n    description: d\n    status: [pending]\n"
                   b"  - name: two\n    description: e\n    status: pending\n",
    "never-firing-cron": b"schedules:\n  - name: never\n    description: d\n    schedule: 0 0 30 2 *\n"
                         b"  - name: daily-one\n    description: e\n    schedule: daily\n",
}

# Text fragments the mutator splices in: everything the 10,000-file run used.
FRAGMENTS = [
    b"&a ", b"*a", b"*b ", b"!!str ", b"!!python/name:os.system ", b"!x ", b"%YAML 1.1\n", b"%TAG ! x:\n", b"---\n",
    b"...\n", b"[", b"]", b"{", b"}", b", ", b": ", b"- ", b"? ", b"|\n", b">-\n", b"#", b"'", b'"', b"\\", b"\t",
    b"\n", b"  ", b"\x00", b"\x7f", b"\x1b", b"\x85", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xe2\x80\xa8",
    "é漢😀".encode(), b"9" * 5000, b"1e999", b"0x" + b"f" * 200, b"x" * 2000, b"null", b"~", b"true", b"no",
    b"0000-00-00", b"9999-12-31T23:59:59Z", b"0001-01-01T00:00:00+01:00", b"2025-13-45", b"<<: *a\n",
    b"status: [pending]", b"name: alpha", b"tasks: 5\n", b"[" * 300, b"{a: " * 100, b"- " * 200, b"  " * 300,
    b"0 0 30 2 *",
]


def mutate(data: bytes, rng: random.Random, rounds: int | None = None) -> bytes:
    """A few random edits: splice in a fragment, delete or duplicate a span, swap lines, flip a byte."""
    data = bytearray(data)
    for _ in range(rounds if rounds is not None else rng.randint(1, 4)):
        kind = rng.randrange(6)
        at = rng.randint(0, len(data))
        if kind <= 1 or not data:
            data[at:at] = rng.choice(FRAGMENTS)
        elif kind == 2:
            data[at: at + rng.randint(1, 40)] = b""
        elif kind == 3:
            span = data[at: at + rng.randint(1, 80)]
            data[at:at] = span * rng.randint(1, 3)
        elif kind == 4:
            lines = bytes(data).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        else:
            if at < len(data):
                data[at] = rng.randrange(256)
    return bytes(data)


SEEDS = [GOOD, CORPUS["flow-style"], CORPUS["anchors"], CORPUS["status-list"], CORPUS["far-future"],
         b"tasks:\n- name: a\n  description: x\n  status: in_progress\n  started_at: 2025-01-01 10:00:00\n"]


# ---------------------------------------------------------------- invariants (shared by the tests and the benchmark)

KIND_FILES = {"tasks": "TASKS.yaml", "projects": "PROJECTS.yaml", "schedules": "SCHEDULES.yaml",
              "issues": "ISSUES.yaml"}


class InvariantBroken(AssertionError):
    """A reader raised, hung, or an edit damaged a file: the thing the fuzz run counts."""


def read_all(directory, data: bytes, bound: float) -> dict[str, float]:
    """Every reader over `data` (written as each queue file in `directory`); raises InvariantBroken if one
    raises anything but ValidationFailed or takes longer than `bound` seconds. → seconds per reader."""
    import time
    from pathlib import Path

    from keystone_agents import queuefile
    from keystone_agents.problems import ValidationFailed
    from keystone_agents.providers.coding import repo_for_task
    from keystone_agents.scheduler import run as scheduler_run
    from keystone_agents.scheduler.schedules import check_document
    from keystone_agents.taskfile import TaskFile, read_entries

    directory = Path(directory)
    for name in KIND_FILES.values():
        (directory / name).write_bytes(data)
    tasks, projects, schedules = (directory / n for n in ("TASKS.yaml", "PROJECTS.yaml", "SCHEDULES.yaml"))

    def schedules_check():
        check_document(queuefile.load(schedules, queuefile.SCHEDULES))

    readers = {
        "taskfile": lambda: TaskFile.load(tasks),
        **{f"queuefile-{kind}": (lambda k=kind: queuefile.load(directory / KIND_FILES[k], queuefile.KINDS[k]))
           for kind in KIND_FILES},
        "read_entries": lambda: read_entries(tasks),
        "archive_refs": lambda: scheduler_run._archive_refs(tasks),
        "coding_route": lambda: repo_for_task({"project": "p", "source_ref": "x"}, projects),
        "schedules": schedules_check,
    }
    lenient = {"read_entries", "archive_refs", "coding_route"}  # these must not even raise ValidationFailed
    times = {}
    for label, reader in readers.items():
        start = time.monotonic()
        try:
            reader()
        except ValidationFailed as exc:
            if label in lenient:
                raise InvariantBroken(f"{label} raised ValidationFailed: {exc}") from exc
            for problem in exc.problems:
                if not problem.message:
                    raise InvariantBroken(f"{label}: a problem without a message") from exc
        except Exception as exc:  # noqa: BLE001 - the invariant under test
            raise InvariantBroken(f"{label} raised {type(exc).__name__}: {exc}") from exc
        times[label] = elapsed = time.monotonic() - start
        if elapsed > bound:
            raise InvariantBroken(f"{label} took {elapsed:.1f} s (bound {bound} s)")
    return times


def edit_and_check(path, rng: random.Random) -> str:
    """Load TASKS.yaml as the loop does, make the loop's kinds of edits, save, and check the invariants:
    the saved file loads and reads back as exactly the intended entries, invalid entries byte for byte; a
    refused edit or a rejected file leaves the bytes untouched. → "rejected", "unchanged", "refused", "saved"."""
    from pathlib import Path

    from keystone_agents.problems import ValidationFailed
    from keystone_agents.taskfile import EditRefused, TaskFile

    path = Path(path)
    before = path.read_bytes()
    try:
        tf = TaskFile.load(path)
    except ValidationFailed:
        return "rejected"
    invalid_sources = [e.source for e in tf.entries if not e.valid and e.source is not None]
    valid = list(tf.valid())
    for entry in valid:
        choice = rng.randrange(6)
        if choice == 0:
            tf.set_fields(entry, {"status": "in_progress", "started_at": "2026-01-01T00:00:00Z"})
        elif choice == 1:
            tf.set_fields(entry, {"status": "completed", "completed_at": "2026-01-02T00:00:00Z",
                                  "blocked_reason": None})
        elif choice == 2:
            tf.set_fields(entry, {"status": "blocked", "blocked_reason": "needs: x\n'quoted' \"and\" #hash"})
        elif choice == 3:
            tf.set_fields(entry, {"needs": None, "started_at": None, "created_at": None})
    if valid and rng.random() < 0.3:
        tf.remove([valid[-1]])
    if rng.random() < 0.5:
        tf.append({"name": f"new-{rng.randrange(10**6)}", "description": "added: by the fuzzer", "status": "pending"})
    if rng.random() < 0.3:  # as prioritize does: valid entries change places, invalid ones stay
        slots = [i for i, e in enumerate(tf.entries) if e.valid]
        moved = [tf.entries[i] for i in slots]
        rng.shuffle(moved)
        order = list(tf.entries)
        for slot, entry in zip(slots, moved):
            order[slot] = entry
        tf.reorder(order)
    elif rng.random() < 0.1:  # any order at all: verdicts may change, then the edit must be refused
        tf.reorder(list(reversed(tf.entries)))
    intended = [(e.data, e.valid) for e in tf.entries]
    try:
        wrote = tf.save()
    except EditRefused:
        if path.read_bytes() != before:
            raise InvariantBroken("a refused edit changed the file") from None
        return "refused"
    except Exception as exc:  # noqa: BLE001 - the invariant under test
        raise InvariantBroken(f"save raised {type(exc).__name__}: {exc}") from exc
    if not wrote:
        if path.read_bytes() != before:
            raise InvariantBroken("save() said it wrote nothing but the file changed")
        return "unchanged"
    try:
        after = TaskFile.load(path)
    except ValidationFailed as exc:
        raise InvariantBroken(f"the loop's edit made a loadable file unloadable: {exc}\n--- before\n"
                              f"{before!r}\n--- after\n{path.read_bytes()!r}") from None
    got = [(e.data, e.valid) for e in after.entries]
    if got != intended:
        raise InvariantBroken(f"the file reads back differently:\n{got}\n!=\n{intended}\n--- before\n{before!r}\n"
                              f"--- after\n{path.read_bytes()!r}")
    text = path.read_text(encoding="utf-8")
    for source in invalid_sources:
        if source not in text:
            raise InvariantBroken(f"invalid entry not kept byte for byte: {source!r}")
    return "saved"
