"""Round-trip fidelity, atomic saves, and the rule that a bad file is never overwritten."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest

from keystone_agents import atomic, queuefile
from keystone_agents.problems import ValidationFailed

HAND_EDITED = """\
---
# Drago's queue. Hand-edited; keep my comments!
tasks:
  # --- urgent stuff first ---
  - name: "fix-login-bug"   # reported by Nicholas
    description: 'Fix the login bug on staging'
    status: pending
    project: webapp
    needs: ["deploy-staging"]
    created_at: 2026-11-20T09:15:00Z

  - name: deploy-staging
    description: >-
      Deploy the current main branch
      to the staging host.
    status: pending
    needs:
      - build-images   # block style
    created_at: "2026-11-19T08:00:00Z"

  # done last week
  - name: build-images
    description: Build the container images
    status: completed
    started_at: 2026-11-18T10:00:00Z
    completed_at: 2026-11-18T10:42:00Z
    workflow: sweng/sweng
"""


def changed_lines(before: str, after: str) -> list[int]:
    """1-based numbers of lines of `before` that were replaced or removed, and insert positions."""
    lines = []
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag != "equal":
            lines.extend(range(i1 + 1, max(i2, i1 + 1) + 1))
    return lines


def test_modify_one_entry_keeps_everything_else_byte_for_byte(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text(HAND_EDITED)
    doc = queuefile.load(path, queuefile.TASKS)
    task = doc.find("deploy-staging")
    task["status"] = "in_progress"
    queuefile.set_field(task, "started_at", "2026-11-21T10:00:00Z")
    doc.save()
    after = path.read_text()
    # the entry spans lines 12-19 of the original; nothing outside it changed
    assert all(12 <= n <= 20 for n in changed_lines(HAND_EDITED, after)), changed_lines(HAND_EDITED, after)
    assert after.startswith("---\n# Drago's queue. Hand-edited; keep my comments!\n")
    assert '  - name: "fix-login-bug"   # reported by Nicholas\n' in after
    assert "      - build-images   # block style\n" in after
    assert "    status: in_progress\n" in after and "    started_at: '2026-11-21T10:00:00Z'\n" in after
    # and the result reloads as the same data plus the change
    again = queuefile.load(path, queuefile.TASKS)
    assert again.problems == [] and again.find("deploy-staging")["status"] == "in_progress"


def test_unmodified_save_is_byte_identical(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text(HAND_EDITED)
    queuefile.load(path, queuefile.TASKS).save()
    assert path.read_text() == HAND_EDITED


def test_default_indentation_style_is_kept(tmp_path):
    text = "tasks:\n- name: a\n  description: one\n  status: pending\n- name: b\n  description: two\n  status: pending\n"
    path = tmp_path / "TASKS.yaml"
    path.write_text(text)
    doc = queuefile.load(path, queuefile.TASKS)
    doc.find("b")["status"] = "completed"
    doc.save()
    assert path.read_text() == text.replace("two\n  status: pending", "two\n  status: completed")


def test_append_to_empty_flow_list_writes_block_style(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text("# queue\ntasks: []\n")
    doc = queuefile.load(path, queuefile.TASKS)
    doc.append({"name": "new-task", "description": "New", "status": "pending"})
    doc.save()
    assert path.read_text() == "# queue\ntasks:\n- name: new-task\n  description: New\n  status: pending\n"


def test_invalid_entry_is_kept_verbatim_while_the_rest_is_updated(tmp_path):
    text = HAND_EDITED + "  - name: ''\n    description: broken entry stays as written\n    status: pending\n"
    path = tmp_path / "TASKS.yaml"
    path.write_text(text)
    doc = queuefile.load(path, queuefile.TASKS)
    assert len(doc.invalid) == 1 and [e["name"] for e in doc.valid_entries()] == [
        "fix-login-bug", "deploy-staging", "build-images"]
    doc.find("fix-login-bug")["status"] = "blocked"
    doc.find("fix-login-bug")["blocked_reason"] = "needs deploy-staging"
    doc.save()
    after = path.read_text()
    assert after.endswith("  - name: ''\n    description: broken entry stays as written\n    status: pending\n")


def test_save_refuses_to_write_an_entry_made_invalid(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text(HAND_EDITED)
    doc = queuefile.load(path, queuefile.TASKS)
    doc.find("build-images")["status"] = "error"  # a status the schema forbids
    with pytest.raises(ValidationFailed) as caught:
        doc.save()
    assert "tasks[2].status" in str(caught.value) and "'error' is not allowed" in str(caught.value)
    assert path.read_text() == HAND_EDITED


def test_save_refuses_a_duplicate_name(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text(HAND_EDITED)
    doc = queuefile.load(path, queuefile.TASKS)
    doc.append({"name": "build-images", "description": "again", "status": "pending"})
    with pytest.raises(ValidationFailed, match="duplicate name 'build-images'"):
        doc.save()
    assert path.read_text() == HAND_EDITED


def test_file_that_fails_validation_is_never_overwritten(tmp_path):
    path = tmp_path / "TASKS.yaml"
    broken = "tasks:\n  - name: a\n    description: [unclosed\n"
    path.write_text(broken)
    with pytest.raises(ValidationFailed):
        queuefile.load(path, queuefile.TASKS)
    assert path.read_text() == broken


def test_crash_between_write_and_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "TASKS.yaml"
    path.write_text(HAND_EDITED)
    doc = queuefile.load(path, queuefile.TASKS)
    doc.find("fix-login-bug")["status"] = "completed"

    def crash(src, dst):
        raise KeyboardInterrupt("simulated crash before rename")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        doc.save()
    assert path.read_text() == HAND_EDITED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TASKS.yaml"]  # no temp file left behind


def test_killed_writer_leaves_old_file_intact(tmp_path):
    """A real process killed (SIGKILL) after writing the temp file but before the rename."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "TASKS.yaml"
    path.write_text(HAND_EDITED)
    script = f"""
import os, signal
from keystone_agents import atomic, queuefile
doc = queuefile.load({str(path)!r}, queuefile.TASKS)
doc.find("fix-login-bug")["status"] = "completed"
atomic.os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)
doc.save()
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_text() == HAND_EDITED
    assert queuefile.load(path, queuefile.TASKS).problems == []


def test_file_mode_is_kept(tmp_path):
    path = tmp_path / "TASKS.yaml"
    path.write_text(HAND_EDITED)
    os.chmod(path, 0o660)
    doc = queuefile.load(path, queuefile.TASKS)
    doc.find("fix-login-bug")["status"] = "completed"
    doc.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o660


def test_new_key_after_nested_last_value_keeps_following_comment_in_place(tmp_path):
    text = (
        "tasks:\n  - name: a\n    description: A\n    status: pending\n    needs:\n      - b  # why\n"
        "\n  # next one\n  - name: b\n    description: B\n    status: pending\n"
    )
    path = tmp_path / "TASKS.yaml"
    path.write_text(text)
    doc = queuefile.load(path, queuefile.TASKS)
    queuefile.set_field(doc.find("a"), "blocked_reason", "waiting for b")
    doc.find("a")["status"] = "blocked"
    doc.save()
    assert path.read_text() == (
        "tasks:\n  - name: a\n    description: A\n    status: blocked\n    needs:\n      - b  # why\n"
        "    blocked_reason: waiting for b\n\n  # next one\n  - name: b\n    description: B\n    status: pending\n"
    )


def test_deleting_the_last_key_keeps_the_following_comment(tmp_path):
    text = (
        "tasks:\n  - name: a\n    description: A\n    status: pending\n    blocked_reason: gone\n"
        "\n  # next one\n  - name: b\n    description: B\n    status: pending\n"
    )
    path = tmp_path / "TASKS.yaml"
    path.write_text(text)
    doc = queuefile.load(path, queuefile.TASKS)
    queuefile.delete_field(doc.find("a"), "blocked_reason")
    doc.save()
    assert path.read_text() == text.replace("    blocked_reason: gone\n", "")
