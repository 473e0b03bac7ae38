"""The queue files survive anything written into them (issue 23).

A hand-made hostile corpus (tests/support/hostile.py) and hypothesis-generated files go through every reader
— the fast TASKS reader, the round-trip reader for all four kinds, the lenient archive reader, the
scheduler's archive dedup, the coding route's PROJECTS lookup, the schedule checks — and through the loop's
own edits. The invariants: no reader raises anything but a ValidationFailed carrying FILE:LINE: FIELD
problems, no read exceeds the wall-time bound, no edit turns a loadable file into an unloadable one or
changes what it did not mean to change, a rejected file or an invalid entry is never rewritten.

The CI size is small (hypothesis max_examples below); `benchmarks/queue_fuzz.py` runs ten thousand files.
"""

from __future__ import annotations

import random
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keystone_agents import queuefile, yamlguard
from keystone_agents.problems import ValidationFailed
from keystone_agents.taskfile import EditRefused, TaskFile
from tests.support import hostile
from tests.unit.test_queue_differential import documents

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

# corpus file → (line, fragment of the message) of the first problem TaskFile.load reports
REJECTED = {
    "alias-bomb": (4, "aliases expand to more than 10 times the nodes written"),
    "deep-nesting-flow": (1, "exceeded maximum nesting depth"),
    "deep-nesting-block": (67, "nested more than 64 levels deep"),
    "long-number": (5, "number is 5,000 characters long; at most 100 are allowed"),
    "long-number-key": (2, "number is 5,000 characters long"),
    "nul-byte": (5, "byte 72 (column 13): control character NUL is not allowed"),
    "del-byte": (5, "control character DEL"),
    "esc-byte": (5, "control character ESC"),
    "invalid-utf8": (3, "byte 41: not UTF-8 text (invalid continuation byte: c3 28"),
    "binary": (2, "byte 128: not UTF-8 text"),
    "bom": (1, "byte 0: starts with a UTF-8 byte-order mark (BOM)"),
    "tag-python": (2, "YAML tag tag:yaml.org,2002:python/object/apply:os.system is not allowed"),
    "tag-local": (5, "YAML tag !secret is not allowed"),
    "directive-yaml": (1, "YAML directives (%YAML, %TAG) are not allowed"),
    "directive-tag": (1, "YAML directives (%YAML, %TAG) are not allowed"),
    "top-level-list": (1, "expected a mapping with the key 'tasks', got list"),
    "top-level-scalar": (1, "expected a mapping with the key 'tasks', got string"),
    "multi-document": (21, "more than one YAML document"),
    "duplicate-keys": (5, "duplicate key 'status' (first at line 4)"),
    "tabs": (2, "not valid YAML"),
    "huge-scalar": (5, "value is 1,100,000 characters long; at most 1,000,000 are allowed"),
    "undefined-alias": (5, "alias *nowhere refers to no anchor defined before it"),
    "tasks-not-a-list": (1, "expected a list of entries, got number"),
    "never-firing-cron": (1, "unknown top-level key"),
}
# corpus file → the entry problems TaskFile.load isolates (the rest of the file stays usable)
LOADED = {
    "flow-style": [],
    "anchors": [],
    "empty": [],
    "far-future": [],
    "ancient-offset": [],
    "zero-date": [(5, "tasks[0].created_at", "'0000-00-00' does not have the expected format")],
    "status-list": [(4, "tasks[0].status", "['pending'] is not allowed")],
}


def test_the_corpus_is_covered():
    assert set(REJECTED) | set(LOADED) == set(hostile.CORPUS)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_hostile_file_is_one_clear_problem(tmp_path, name):
    path = tmp_path / "TASKS.yaml"
    path.write_bytes(hostile.CORPUS[name])
    with pytest.raises(ValidationFailed) as caught:
        TaskFile.load(path)
    first = caught.value.problems[0]
    line, fragment = REJECTED[name]
    assert fragment in first.message, str(first)
    assert first.line == line, str(first)
    assert str(first).startswith(f"{path}:{line}:" if line else f"{path}:")
    # the round-trip reader refuses it too (ruamel's own wording may differ for plain syntax errors)
    with pytest.raises(ValidationFailed):
        queuefile.load(path, queuefile.TASKS)


@pytest.mark.parametrize("name", sorted(LOADED))
def test_schema_accepted_oddities_stay_one_bad_value(tmp_path, name):
    path = tmp_path / "TASKS.yaml"
    path.write_bytes(hostile.CORPUS[name])
    problems = TaskFile.load(path).problems
    assert [(p.line, p.field) for p in problems] == [(line, fld) for line, fld, _ in LOADED[name]]
    for problem, (_, _, fragment) in zip(problems, LOADED[name]):
        assert fragment in problem.message


@pytest.mark.parametrize("name", sorted(hostile.CORPUS))
def test_every_reader_survives_the_corpus(tmp_path, name):
    hostile.read_all(tmp_path, hostile.CORPUS[name], yamlguard.DEADLINE)


@pytest.mark.parametrize("name", sorted(hostile.CORPUS))
def test_loop_edits_never_damage_a_corpus_file(tmp_path, name):
    path = tmp_path / "TASKS.yaml"
    for seed in range(3):
        path.write_bytes(hostile.CORPUS[name])
        outcome = hostile.edit_and_check(path, random.Random(seed))
        assert outcome == ("rejected" if name in REJECTED else outcome)


@FUZZ
@given(seed=st.sampled_from(hostile.SEEDS), rng=st.randoms(use_true_random=False))
def test_mutated_files_never_break_a_reader_or_the_editor(tmp_path, seed, rng):
    data = hostile.mutate(seed, rng)
    hostile.read_all(tmp_path, data, yamlguard.DEADLINE)
    path = tmp_path / "TASKS.yaml"
    path.write_bytes(data)
    hostile.edit_and_check(path, rng)


@FUZZ
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_break_a_reader(tmp_path, data):
    hostile.read_all(tmp_path, data, yamlguard.DEADLINE)


@FUZZ
@given(text=documents(), rng=st.randoms(use_true_random=False))
def test_generated_task_files_survive_the_loops_edits(tmp_path, text, rng):
    path = tmp_path / "TASKS.yaml"
    path.write_text(text, encoding="utf-8")
    hostile.edit_and_check(path, rng)


# ---------------------------------------------------------------- the editor's fallbacks, one by one

ANCHORED = textwrap.dedent("""\
    # shared text
    tasks:
      - name: one
        description: &d shared text   # the anchor
        status: pending
      - name: two
        description: *d
        status: pending
""")


def test_anchored_file_is_edited_through_the_round_trip_path(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text(ANCHORED)
    tf = TaskFile.load(path)
    assert tf.style.anchors and tf.style.aliases
    tf.set_fields(tf.find("two"), {"status": "completed", "completed_at": "2026-01-02T00:00:00Z"})
    assert tf.save() is True
    text = path.read_text()
    assert "# shared text" in text and "&d shared text   # the anchor" in text and "*d" in text
    again = TaskFile.load(path)
    assert again.find("two").data == {"name": "two", "description": "shared text", "status": "completed",
                                      "completed_at": "2026-01-02T00:00:00Z"}
    assert again.find("one").get("status") == "pending"


def test_an_edit_that_would_change_another_entry_is_refused_and_the_file_kept(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text(ANCHORED.replace("  - name: two\n", "  - name: Two\n"))  # "Two": an invalid entry
    before = path.read_bytes()
    tf = TaskFile.load(path)
    assert [e.valid for e in tf.entries] == [True, False]
    tf.remove([tf.find("one")])  # the invalid entry's alias would have to become the anchor: not verbatim
    with pytest.raises(EditRefused) as caught:
        tf.save()
    assert "edit not written, the file is left as it was" in str(caught.value)
    assert path.read_bytes() == before


def test_an_entry_that_text_edits_would_break_goes_through_the_round_trip_path(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text("tasks:\n  - name: one\n    description: d\n    status: pending\n")
    tf = TaskFile.load(path)
    entry = tf.find("one")
    entry.text = "  - name: one\n  description: d\n    status: pending\n"  # what a buggy text edit might produce
    tf.set_fields(entry, {"status": "completed"})
    tf.save()
    again = TaskFile.load(path)
    assert [e.data for e in again.entries] == [{"name": "one", "description": "d", "status": "completed"}]


def test_invalid_entries_of_a_flow_list_are_kept_byte_for_byte(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text("tasks: [{name: one, description: d, status: pending}, {name: Bad,  description: x,  status: ok}]\n")
    tf = TaskFile.load(path)
    tf.set_fields(tf.find("one"), {"status": "completed"})
    tf.save()
    text = path.read_text()
    assert "{name: Bad,  description: x,  status: ok}" in text
    assert TaskFile.load(path).find("one").get("status") == "completed"


def test_a_rejected_file_is_never_written(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_bytes(hostile.CORPUS["alias-bomb"])
    with pytest.raises(ValidationFailed):
        TaskFile.load(path)
    with pytest.raises(ValidationFailed):
        queuefile.load(path, queuefile.TASKS)
    assert path.read_bytes() == hostile.CORPUS["alias-bomb"]


def test_guard_reports_position_and_path(tmp_path):
    text = "tasks:\n  - name: a\n    needs: [x, y]\n    needs: [z]\n"
    with pytest.raises(ValidationFailed) as caught:
        yamlguard.check(text, "T.yaml")
    assert str(caught.value) == "T.yaml:4: tasks[0].needs: duplicate key 'needs' (first at line 3); a key may appear only once"


def test_a_never_firing_cron_is_a_problem_of_that_schedule_only(tmp_path):
    from keystone_agents.scheduler.schedules import check_document

    path = tmp_path / "SCHEDULES.yaml"
    path.write_bytes(hostile.CORPUS["never-firing-cron"])
    doc = queuefile.load(path, queuefile.SCHEDULES)
    problems = check_document(doc)
    assert [str(p) for p in problems] == [
        f"{path}:4: schedules[0].schedule: '0 0 30 2 *' never fires (no such date, e.g. 30 February); fix the day or month"]


@pytest.mark.parametrize("name", sorted(hostile.CORPUS))
def test_tasks_and_info_commands_survive_the_corpus(agent_home, run_agent, name):
    (agent_home / "TASKS.yaml").write_bytes(hostile.CORPUS[name])
    for command in ("tasks", "info"):
        result = run_agent(command, "--home", str(agent_home))  # catch_exceptions=False: a crash fails here
        assert result.exit_code in (0, 1), result.output
        if name in REJECTED and command == "tasks":
            assert result.exit_code == 1 and "TASKS.yaml:" in result.output
