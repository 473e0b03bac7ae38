"""Every seed rule of the queue files has a failing example with the message the operator sees."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from keystone_agents import queuefile
from keystone_agents.problems import ValidationFailed


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems_of(path: Path, kind) -> list[str]:
    return [str(p) for p in queuefile.check(path, kind)]


VALID_TASK = """\
  - name: good-task
    description: Do the good thing
    status: pending
"""

# (rule, TASKS.yaml body, expected line, expected field, expected message fragment)
TASK_ENTRY_RULES = [
    (
        "every task has a name",
        "tasks:\n  - description: no name\n    status: pending\n" + VALID_TASK,
        2, "tasks[0].name", "required field is missing",
    ),
    (
        "every task has a description",
        "tasks:\n  - name: no-desc\n    status: pending\n" + VALID_TASK,
        2, "tasks[0].description", "required field is missing",
    ),
    (
        "every task has a status",
        "tasks:\n  - name: no-status\n    description: x\n" + VALID_TASK,
        2, "tasks[0].status", "required field is missing",
    ),
    (
        "status is one of pending|in_progress|completed|blocked",
        "tasks:\n  - name: bad-status\n    description: x\n    status: error\n" + VALID_TASK,
        4, "tasks[0].status", "'error' is not allowed; expected one of: pending | in_progress | completed | blocked",
    ),
    (
        "field names match exactly: no id",
        "tasks:\n  - name: with-id\n    description: x\n    status: pending\n    id: 7\n" + VALID_TASK,
        5, "tasks[0].id", "unknown field 'id'; allowed fields: blocked_reason",
    ),
    (
        "field names match exactly: no priority",
        "tasks:\n  - name: with-priority\n    description: x\n    status: pending\n    priority: 1\n" + VALID_TASK,
        5, "tasks[0].priority", "unknown field 'priority'",
    ),
    (
        "field names match exactly: no urgency",
        "tasks:\n  - name: with-urgency\n    description: x\n    status: pending\n    urgency: high\n" + VALID_TASK,
        5, "tasks[0].urgency", "unknown field 'urgency'",
    ),
    (
        "field names match exactly: no depends_on (it is `needs`)",
        "tasks:\n  - name: with-deps\n    description: x\n    status: pending\n    depends_on: [a]\n" + VALID_TASK,
        5, "tasks[0].depends_on", "unknown field 'depends_on'",
    ),
    (
        "name is kebab-case",
        "tasks:\n  - name: Fix The Bug\n    description: x\n    status: pending\n" + VALID_TASK,
        2, "tasks[0].name", "'Fix The Bug' does not have the expected format: Unique kebab-case",
    ),
    (
        "name is not empty",
        "tasks:\n  - name: ''\n    description: x\n    status: pending\n" + VALID_TASK,
        2, "tasks[0].name", "does not have the expected format",
    ),
    (
        "names are unique",
        "tasks:\n" + VALID_TASK + VALID_TASK.replace("good-task", "other") + VALID_TASK,
        8, "tasks[2].name", "duplicate name 'good-task' (first defined at line 2)",
    ),
    (
        "description is a string",
        "tasks:\n  - name: typed\n    description: [a, b]\n    status: pending\n" + VALID_TASK,
        3, "tasks[0].description", "expected string, got list",
    ),
    (
        "needs is a list of task names",
        "tasks:\n  - name: needy\n    description: x\n    status: pending\n    needs: other-task\n" + VALID_TASK,
        5, "tasks[0].needs", "expected array, got string 'other-task'",
    ),
    (
        "provider is claude|gemini|codex (or command|openai)",
        "tasks:\n  - name: prov\n    description: x\n    status: pending\n    provider: gpt\n" + VALID_TASK,
        5, "tasks[0].provider", "'gpt' is not allowed; expected one of: claude | gemini | codex | command | openai",
    ),
    (
        "effort is low|medium|high|max",
        "tasks:\n  - name: eff\n    description: x\n    status: pending\n    effort: extreme\n" + VALID_TASK,
        5, "tasks[0].effort", "'extreme' is not allowed; expected one of: low | medium | high | max",
    ),
    (
        "an entry is a mapping",
        "tasks:\n  - just a string\n" + VALID_TASK,
        2, "tasks[0]", "expected object, got string",
    ),
    (
        "timestamps are ISO 8601",
        "tasks:\n  - name: ts\n    description: x\n    status: pending\n    created_at: yesterday\n" + VALID_TASK,
        5, "tasks[0].created_at", "'yesterday' does not have the expected format",
    ),
]


@pytest.mark.parametrize("rule,body,line,field,message", TASK_ENTRY_RULES, ids=[r[0] for r in TASK_ENTRY_RULES])
def test_task_entry_rule_is_reported_and_isolated(tmp_path, rule, body, line, field, message):
    path = write(tmp_path, "TASKS.yaml", body)
    doc = queuefile.load(path, queuefile.TASKS)
    texts = [str(p) for p in doc.problems]
    assert any(t.startswith(f"{path}:{line}: {field}: ") and message in t for t in texts), texts
    # the invalid entry is isolated; the valid one stays usable
    valid_names = [e["name"] for e in doc.valid_entries()]
    assert "good-task" in valid_names
    assert len(doc.invalid) == 1


FILE_RULES = [
    ("valid YAML", "tasks:\n  - name: x\n    description: [unclosed\n", 4, "", "not valid YAML"),
    ("single top-level key: no summary", "tasks: []\nsummary: done\n", 2, "summary",
     "unknown top-level key; the only keys allowed are: tasks"),
    ("single top-level key: no metadata", "metadata: {}\ntasks: []\n", 1, "metadata", "unknown top-level key"),
    ("tasks is required", "todo: []\n", 1, "tasks", "required top-level key 'tasks' is missing"),
    ("tasks is a sequence", "tasks: {a: 1}\n", 1, "tasks", "expected a list of entries, got mapping"),
    ("the document is a mapping", "- a\n- b\n", 1, "", "expected a mapping with the key 'tasks', got list"),
]


@pytest.mark.parametrize("rule,body,line,field,message", FILE_RULES, ids=[r[0] for r in FILE_RULES])
def test_file_rule_refuses_the_file(tmp_path, rule, body, line, field, message):
    path = write(tmp_path, "TASKS.yaml", body)
    with pytest.raises(ValidationFailed) as caught:
        queuefile.load(path, queuefile.TASKS)
    texts = [str(p) for p in caught.value.problems]
    prefix = f"{path}:{line}: " + (f"{field}: " if field else "")
    assert any(t.startswith(prefix) and message in t for t in texts), texts


PROJECT_RULES = [
    ("project needs slug", "projects:\n  - name: P\n    description: d\n    status: active\n    priority: 1\n    updated: '2026-01-01'\n",
     2, "projects[0].slug", "required field is missing"),
    ("slug is kebab-case", "projects:\n  - name: P\n    slug: My_Project\n    description: d\n    status: active\n    priority: 1\n    updated: '2026-01-01'\n",
     3, "projects[0].slug", "does not have the expected format"),
    ("status is active|archived", "projects:\n  - name: P\n    slug: p\n    description: d\n    status: paused\n    priority: 1\n    updated: '2026-01-01'\n",
     5, "projects[0].status", "'paused' is not allowed; expected one of: active | archived"),
    ("priority is numeric", "projects:\n  - name: P\n    slug: p\n    description: d\n    status: active\n    priority: high\n    updated: '2026-01-01'\n",
     6, "projects[0].priority", "expected number, got string 'high'"),
    ("updated is a date", "projects:\n  - name: P\n    slug: p\n    description: d\n    status: active\n    priority: 1\n    updated: soon\n",
     7, "projects[0].updated", "does not have the expected format"),
    ("a source has a command", "projects: []\nsources:\n  - name: gh\n",
     3, "sources[0].command", "required field is missing"),
    ("a source command is a string or argv list", "projects: []\nsources:\n  - name: gh\n    command: 42\n",
     4, "sources[0].command", "42 is not valid"),
    ("a per-project source has a name", "projects:\n  - name: P\n    slug: p\n    description: d\n    status: active\n    priority: 1\n    updated: '2026-01-01'\n    sources:\n      - command: echo []\n",
     9, "projects[0].sources[0].name", "required field is missing"),
    ("slugs are unique", "projects:\n  - {name: A, slug: p, description: d, status: active, priority: 1, updated: '2026-01-01'}\n  - {name: B, slug: p, description: d, status: active, priority: 2, updated: '2026-01-01'}\n",
     3, "projects[1].slug", "duplicate slug 'p'"),
]


SCHEDULE_RULES = [
    ("schedule format", "schedules:\n  - name: s\n    description: d\n    schedule: hourly\n",
     4, "schedules[0].schedule", "'hourly' does not have the expected format: daily | weekly:<day>"),
    ("weekly needs a day name", "schedules:\n  - name: s\n    description: d\n    schedule: weekly:funday\n",
     4, "schedules[0].schedule", "does not have the expected format"),
    ("monthly day 1-31", "schedules:\n  - name: s\n    description: d\n    schedule: monthly:32\n",
     4, "schedules[0].schedule", "does not have the expected format"),
    ("name is kebab-case", "schedules:\n  - name: Daily Report\n    description: d\n    schedule: daily\n",
     2, "schedules[0].name", "does not have the expected format"),
    ("description required", "schedules:\n  - name: s\n    schedule: daily\n",
     2, "schedules[0].description", "required field is missing"),
    ("time is HH:MM", "schedules:\n  - name: s\n    description: d\n    schedule: daily\n    time: 25:00\n",
     5, "schedules[0].time", "does not have the expected format"),
]


ISSUE_RULES = [
    ("discovered_during required", "issues:\n  - name: i\n    description: d\n    status: open\n",
     2, "issues[0].discovered_during", "required field is missing"),
    ("status open|mitigated|resolved", "issues:\n  - name: i\n    description: d\n    discovered_during: t\n    status: closed\n",
     5, "issues[0].status", "'closed' is not allowed; expected one of: open | mitigated | resolved"),
    ("severity low..critical", "issues:\n  - name: i\n    description: d\n    discovered_during: t\n    status: open\n    severity: urgent\n",
     6, "issues[0].severity", "'urgent' is not allowed; expected one of: low | medium | high | critical"),
    ("only one top-level key", "issues: []\nnotes: x\n", 2, "notes", "unknown top-level key"),
]


OTHER_FILE_RULES = (
    [(queuefile.PROJECTS, *rule) for rule in PROJECT_RULES]
    + [(queuefile.SCHEDULES, *rule) for rule in SCHEDULE_RULES]
    + [(queuefile.ISSUES, *rule) for rule in ISSUE_RULES]
)


@pytest.mark.parametrize(
    "kind,rule,body,line,field,message", OTHER_FILE_RULES, ids=[f"{r[0].filename}: {r[1]}" for r in OTHER_FILE_RULES]
)
def test_projects_schedules_issues_rules(tmp_path, kind, rule, body, line, field, message):
    path = write(tmp_path, kind.filename, body)
    texts = problems_of(path, kind)
    assert any(t.startswith(f"{path}:{line}: {field}: ") and message in t for t in texts), texts


def test_seed_examples_are_valid(tmp_path):
    """The seed's own examples pass (the override example task, a project with sources, a schedule, an issue)."""
    tasks = write(tmp_path, "TASKS.yaml", """
        tasks:
          - name: "review-agent-provider-docs"
            description: "Add docs for per-task providers and defaults."
            status: pending
            source: manual
            source_ref: "manual-review-agent-provider-docs"
            profile: "medium"
            provider: claude
            model: sonnet
            fallback_model: opus
            effort: high
            needs: ["other-task"]
            created_at: 2026-11-21T10:00:00Z
    """)
    projects = write(tmp_path, "PROJECTS.yaml", """
        projects:
          - name: "project-name"
            slug: "project-name"
            description: "What it is"
            status: active
            priority: 1
            updated: "2026-02-15"
            repos:
              - "git@github.com:owner/repo-name.git"
        sources:
          - name: "github-issues"
            command: "gh issue list --json number,title,body --assignee @me"
    """)
    schedules = write(tmp_path, "SCHEDULES.yaml", """
        schedules:
          - name: "daily-priorities"
            description: "..."
            schedule: "daily"
            workflow: "daily_status/send"
          - name: weekday-report
            description: cron form
            schedule: "0 18 * * 1-5"
    """)
    issues = write(tmp_path, "ISSUES.yaml", """
        issues:
          - name: "issue-name"
            description: "What happened"
            discovered_during: "task-name"
            status: open
            severity: medium
            workaround: "..."
            fix: "..."
    """)
    for path, kind in ((tasks, queuefile.TASKS), (projects, queuefile.PROJECTS),
                       (schedules, queuefile.SCHEDULES), (issues, queuefile.ISSUES)):
        assert queuefile.check(path, kind) == [], path


def test_missing_file_is_an_empty_queue(tmp_path):
    doc = queuefile.load(tmp_path / "TASKS.yaml", queuefile.TASKS)
    assert list(doc.valid_entries()) == [] and not doc.exists


def test_empty_file_and_empty_key_are_empty_queues(tmp_path):
    for body in ("", "# only a comment\n", "tasks:\n"):
        path = write(tmp_path, "TASKS.yaml", body)
        doc = queuefile.load(path, queuefile.TASKS)
        assert list(doc.valid_entries()) == [] and doc.problems == []


@pytest.mark.parametrize("rule,body,line,field,message", TASK_ENTRY_RULES + [(*r, ) for r in FILE_RULES],
                         ids=[r[0] for r in TASK_ENTRY_RULES + FILE_RULES])
def test_the_loops_fast_reader_reports_the_same(tmp_path, rule, body, line, field, message):
    """taskfile (the loop's reader, also `tasks` and `validate`) says what queuefile says, at the same place."""
    from keystone_agents.taskfile import TaskFile

    path = write(tmp_path, "TASKS.yaml", body)
    try:
        texts = [str(p) for p in TaskFile.load(path).problems]
    except ValidationFailed as exc:
        texts = [str(p) for p in exc.problems]
    prefix = f"{path}:{line}: " + (f"{field}: " if field else "")
    assert any(t.startswith(prefix) and message in t for t in texts), texts
