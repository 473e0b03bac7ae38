"""The fast comment-preserving TASKS.yaml editor used by the loop."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from keystone_agents.problems import ValidationFailed
from keystone_agents.taskfile import TaskFile, scalar

QUEUE = textwrap.dedent("""\
    ---
    # my queue
    tasks:
      # about a
      - name: a   # trailing comment
        description: "Do A"
        status: pending
        needs:
          - b
      - {name: b, description: B, status: pending}
      - name: ""
        description: x
        status: pending
      # about c
      - name: c
        description: |
          multi
          line
        status: completed
    # end
""")


@pytest.fixture
def queue(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text(QUEUE)
    return path


def test_unedited_file_round_trips_byte_for_byte_and_isolates_bad_entries(queue):
    tf = TaskFile.load(queue)
    assert tf.text() == QUEUE
    assert [(e.name, e.valid) for e in tf.entries] == [("a", True), ("b", True), ("", False), ("c", True)]
    assert [(p.line, p.field) for p in tf.problems] == [(11, "tasks[2].name")]
    assert tf.save() is False


def test_edits_touch_only_their_fields_and_keep_comments(queue):
    tf = TaskFile.load(queue)
    tf.set_fields(tf.find("a"), {"status": "in_progress", "started_at": "2026-01-01T00:00:00Z", "needs": None})
    tf.set_fields(tf.find("c"), {"description": "one line", "status": "pending"})
    tf.save()
    text = queue.read_text()
    assert "  - name: a   # trailing comment\n    description: \"Do A\"\n    status: in_progress\n" \
           "    started_at: \"2026-01-01T00:00:00Z\"\n" in text
    assert "# about a" in text and "# about c" in text and "# end" in text and text.startswith("---\n# my queue\n")
    assert "  - {name: b, description: B, status: pending}\n" in text  # untouched entry keeps its style
    data = yaml.safe_load(text)["tasks"]
    assert data[0] == {"name": "a", "description": "Do A", "status": "in_progress", "started_at": "2026-01-01T00:00:00Z"}
    assert data[3] == {"name": "c", "description": "one line", "status": "pending"}


def test_hostile_strings_round_trip_exactly(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text("tasks: []\n")
    tf = TaskFile.load(path)
    nasty = 'Quote \' and " and $(rm -rf ~) `id` \\ back\nnew line: yes # not a comment\u2028sep\ttab'
    tf.append({"name": "nasty", "description": nasty, "status": "pending", "source_ref": "true"})
    tf.save()
    tf2 = TaskFile.load(path)
    assert tf2.find("nasty").data["description"] == nasty
    assert tf2.find("nasty").data["source_ref"] == "true"
    tf2.set_fields(tf2.find("nasty"), {"blocked_reason": nasty, "status": "blocked"})
    tf2.save()
    assert yaml.safe_load(path.read_text())["tasks"][0]["blocked_reason"] == nasty
    for value in ["yes", "null", "1.5", "2026-01-01", "- x", "a: b", "#x", "", "~"]:
        assert yaml.safe_load("v: " + scalar(value))["v"] == value


@pytest.mark.parametrize("text", ["tasks: []\n", "tasks:\n", "", "# c\ntasks: [] # x\n# after\n",
                                  "tasks:\n- name: z\n  description: Z\n  status: pending",
                                  "tasks: [{name: q, description: Q, status: pending}]\n"])
def test_append_to_any_shape_of_file(tmp_path, text):
    path = tmp_path / "TASKS.yaml"
    path.write_text(text)
    tf = TaskFile.load(path)
    before = [e.data for e in tf.entries]
    tf.append({"name": "n", "description": "N", "status": "pending"})
    tf.save()
    assert yaml.safe_load(path.read_text())["tasks"] == before + [{"name": "n", "description": "N", "status": "pending"}]
    if "# after" in text:
        assert "# after" in path.read_text()


def test_reorder_moves_whole_entries_with_their_comments(queue):
    tf = TaskFile.load(queue)
    tf.reorder([tf.entries[i] for i in (3, 2, 1, 0)])
    tf.save()
    text = queue.read_text()
    assert text.index("# about c") < text.index("- name: c") < text.index("# about a") < text.index("- name: a")
    assert [t["name"] for t in yaml.safe_load(text)["tasks"]] == ["c", "", "b", "a"]


def test_file_problems_name_file_and_line(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text("tasks:\n  - name: a\n    description: [unclosed\n")
    with pytest.raises(ValidationFailed) as info:
        TaskFile.load(path)
    assert info.value.problems[0].file == str(path) and info.value.problems[0].line
    path.write_text("tasks: []\nsummary: nope\n")
    with pytest.raises(ValidationFailed) as info:
        TaskFile.load(path)
    assert (info.value.problems[0].line, info.value.problems[0].field) == (2, "summary")


def test_invalid_updates_are_refused(queue):
    tf = TaskFile.load(queue)
    with pytest.raises(ValidationFailed):
        tf.set_fields(tf.find("a"), {"status": "error"})
    with pytest.raises(ValueError):
        tf.set_fields(tf.entries[2], {"status": "completed"})
    assert tf.text() == QUEUE
