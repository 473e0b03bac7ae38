"""One schema, one checker: the fast TASKS.yaml reader (taskfile, libyaml + a fast pre-check) and the
round-trip reader (queuefile, ruamel + jsonschema) give the same verdict and the same problems — file, line,
field and message — for valid and invalid task files alike (hypothesis generates them)."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keystone_agents import queuefile
from keystone_agents.problems import ValidationFailed
from keystone_agents.taskfile import KNOWN_FIELDS, TaskFile, fast_valid

names = st.one_of(
    st.from_regex(r"\A[a-z0-9]{1,6}(-[a-z0-9]{1,4}){0,2}\Z"),
    st.sampled_from(["", "Bad Name", "a--b", "-a", "UPPER", "a_b"]),
)
timestamps = st.one_of(
    st.sampled_from(["2025-06-01T10:00:00Z", "2025-06-01 10:00", "2025-06-01T10:00:00.5+02:00",
                     "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z", "2025-06-01", "yesterday", ""]),
    st.datetimes().map(lambda d: d.isoformat()),
)
text = st.text(alphabet=string.ascii_letters + string.digits + " -_:#'\"\n\té漢", max_size=20)
scalars = st.one_of(text, st.integers(-10**6, 10**6), st.booleans(), st.none(), st.floats(allow_nan=False))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(text, scalars, max_size=2))
field_values = {
    "name": st.one_of(names, values),
    "status": st.one_of(st.sampled_from(["pending", "in_progress", "completed", "blocked", "done", "Pending"]), values),
    "provider": st.one_of(st.sampled_from(["claude", "codex", "gemini", "command", "openai", "gpt"]), values),
    "effort": st.one_of(st.sampled_from(["low", "medium", "high", "max", "huge"]), values),
    "needs": st.one_of(st.lists(names, max_size=3), values),
    "created_at": st.one_of(timestamps, values),
    "started_at": st.one_of(timestamps, values),
    "completed_at": st.one_of(timestamps, values),
}


@st.composite
def entries(draw):
    if draw(st.integers(0, 15)) == 0:
        return draw(st.one_of(scalars, st.lists(scalars, max_size=2)))
    entry = {"name": draw(field_values["name"]), "description": draw(st.one_of(text, values)),
             "status": draw(field_values["status"])}
    for key in draw(st.lists(st.sampled_from(KNOWN_FIELDS + ("priority", "Name")), max_size=4, unique=True)):
        entry[key] = draw(field_values.get(key, st.one_of(text, values)))
    for key in draw(st.lists(st.sampled_from(["name", "description", "status"]), max_size=1)):
        del entry[key]
    return entry


@st.composite
def documents(draw):
    doc: object = {"tasks": draw(st.lists(entries(), max_size=6))}
    shape = draw(st.integers(0, 20))
    if shape == 0:
        doc["extra"] = 1
    elif shape == 1:
        doc = doc["tasks"]
    elif shape == 2:
        doc = {"tasks": draw(scalars)}
    flow = draw(st.sampled_from([False, None, True]))
    return yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True, sort_keys=draw(st.booleans()))


def verdict(read):
    try:
        problems = read()
    except ValidationFailed as exc:
        return "rejected", sorted((p.line, p.field, p.message) for p in exc.problems)
    return "loaded", sorted((p.line, p.field, p.message) for p in problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(text=documents())
def test_fast_and_round_trip_readers_agree(tmp_path, text):
    path = tmp_path / "TASKS.yaml"
    path.write_text(text, encoding="utf-8")
    fast = verdict(lambda: TaskFile.load(path).problems)
    slow = verdict(lambda: queuefile.load(path, queuefile.TASKS).problems)
    assert fast == slow, text


@settings(max_examples=500, deadline=None)
@given(entry=entries())
def test_the_fast_pre_check_never_accepts_what_the_schema_refuses(entry):
    from keystone_agents.schemas import validator

    from keystone_agents.plain import to_plain

    plain = to_plain(entry)
    if fast_valid(plain):
        assert not list(validator("tasks", "task").iter_errors(plain)), plain


@pytest.mark.parametrize("text", [
    "tasks:\n  - name: a\n    description: d\n    status: pending\n    status: done\n",
    "tasks:\n  - name: a\n    description: d\n    status: pending\n    created_at: 0000-00-00\n",
    "tasks:\n  - name: a\n    description: d\n    status: [pending]\n  - name: a\n    description: e\n    status: pending\n",
    "tasks:\n  - name: a\n    description: &x d\n    status: pending\n  - name: b\n    description: *x\n    status: pending\n",
    "tasks:\n  started_at: 2025-01-01 10:00:00\n  status: pending\n- name: a\n",  # found by benchmarks/queue_fuzz.py
])
def test_the_readers_agree_on_hand_made_cases(tmp_path, text):
    path = tmp_path / "TASKS.yaml"
    path.write_text(text)
    assert verdict(lambda: TaskFile.load(path).problems) == verdict(lambda: queuefile.load(path, queuefile.TASKS).problems)
