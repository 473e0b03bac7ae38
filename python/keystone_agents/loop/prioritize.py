"""Prioritize, deterministic: pending tasks ordered by project rank (PROJECTS.yaml `priority`, then list
order; unaffiliated or unknown projects last), then `created_at`, stably; every other status keeps its
place. Workflow and runtime (profile/provider/model/...) come from ordered rules, first match wins, and
never replace what a task already has: the configured workflowRules, then the seed's decision tree
(DEFAULT_WORKFLOW_RULES). Nothing changes → nothing is written."""

from __future__ import annotations

import re
from functools import lru_cache

from keystone_agents.config import Rule, RuntimeRule, WorkflowRule
from keystone_agents.taskfile import Entry, TaskFile
from keystone_agents.timeutil import parse_time

RUNTIME_FIELDS = (("profile", "profile"), ("provider", "provider"), ("model", "model"),
                  ("fallback_model", "fallback_model"), ("effort", "effort"))

# The seed's decision tree (docs/task-loop.md), applied after the configured workflowRules unless
# defaultWorkflowRules is false. First match wins; keywords match on word boundaries, case-insensitively.
PRESS_RELEASE = ["press release", "working backwards"]
CAD_KEYWORDS = ["OpenSCAD", "FreeCAD", "STL", "3D print", "3D printing", "3D printed", "3D printer", "CAD", "PCB",
                "KiCad"]
CODE_KEYWORDS = ["bug", "bugs", "fix", "fixes", "refactor", "refactoring", "test", "tests", "PR", "PRs",
                 "pull request", "build", "compile", "CI", "code", "implement", "regression", "crash", "lint",
                 "deploy", "merge conflict", "stack trace"]
FORGE_SOURCES = ["github-issue", "github-pr", "github-pr-review", "forgejo-issue", "forgejo-pr", "forgejo-pr-review"]
DEFAULT_WORKFLOW_RULES: tuple[WorkflowRule, ...] = (
    WorkflowRule(keywords=PRESS_RELEASE, workflow="press_release/write"),
    WorkflowRule(keywords=CAD_KEYWORDS, workflow="cadeng/cadeng"),
    WorkflowRule(project_keywords=CAD_KEYWORDS, workflow="cadeng/cadeng"),
    *(WorkflowRule(source=source, workflow="sweng/sweng") for source in FORGE_SOURCES),
    WorkflowRule(project_has_repos=True, workflow="sweng/sweng"),
    WorkflowRule(keywords=CODE_KEYWORDS, workflow="sweng/sweng"),
)


def workflow_rules(config) -> list[WorkflowRule]:
    """The configured workflowRules, then (unless defaultWorkflowRules is false) the built-in tree."""
    rules = list(config.workflow_rules)
    if getattr(config, "default_workflow_rules", True):
        rules += DEFAULT_WORKFLOW_RULES
    return rules


@lru_cache(maxsize=1024)
def keyword_pattern(word: str) -> re.Pattern:
    """`word` (or phrase; any whitespace between its words) not inside a longer word, case-insensitive."""
    body = r"\s+".join(re.escape(part) for part in word.split())
    return re.compile(rf"(?<![A-Za-z0-9_]){body}(?![A-Za-z0-9_])", re.IGNORECASE)


def has_keyword(words, text: str) -> bool:
    return any(keyword_pattern(word).search(text) for word in words)


def matches(rule: Rule, entry: Entry, projects: dict[str, dict] | None = None) -> bool:
    """Every condition the rule gives holds. `projects`: slug → {"description", "repos"} (PROJECTS.yaml)."""
    if rule.source is not None and entry.get("source") != rule.source:
        return False
    if rule.project is not None and entry.get("project") != rule.project:
        return False
    if rule.keywords:
        haystack = f"{entry.get('name', '')}\n{entry.get('description', '')}"
        if not has_keyword(rule.keywords, haystack):
            return False
    project = (projects or {}).get(entry.get("project")) if entry.get("project") else None
    if getattr(rule, "project_keywords", None):
        if project is None or not has_keyword(rule.project_keywords, project.get("description") or ""):
            return False
    if getattr(rule, "project_has_repos", None) is not None:
        if bool(project and project.get("repos")) != rule.project_has_repos:
            return False
    return True


def apply_rules(tf: TaskFile, workflow_rules: list[WorkflowRule], runtime_rules: list[RuntimeRule],
                projects: dict[str, dict] | None = None) -> int:
    changed = 0
    for entry in list(tf.valid()):
        if entry.get("status") != "pending":
            continue
        updates = {}
        if not entry.get("workflow"):
            for rule in workflow_rules:
                if rule.workflow and matches(rule, entry, projects):
                    updates["workflow"] = rule.workflow
                    break
        for rule in runtime_rules:
            if matches(rule, entry, projects):
                for task_field, rule_field in RUNTIME_FIELDS:
                    value = getattr(rule, rule_field)
                    if value and not entry.get(task_field):
                        updates[task_field] = value
                break
        if updates:
            tf.set_fields(entry, updates)
            changed += 1
    return changed


def order(tf: TaskFile, ranks: dict[str, int]) -> bool:
    """Reorder pending tasks in place; True if the order changed."""
    slots = [i for i, e in enumerate(tf.entries) if e.valid and e.get("status") == "pending"]
    if len(slots) < 2:
        return False
    last = len(ranks)
    pending = [tf.entries[i] for i in slots]

    def key(item):
        index, entry = item
        created = parse_time(entry.get("created_at"))
        # a task without created_at was written by hand before anything dated: it counts as oldest
        return (ranks.get(entry.get("project"), last), created is not None,
                created.timestamp() if created else 0.0, index)

    ranked = [entry for _, entry in sorted(enumerate(pending), key=key)]
    if all(a is b for a, b in zip(ranked, pending)):
        return False
    entries = list(tf.entries)
    for slot, entry in zip(slots, ranked):
        entries[slot] = entry
    tf.reorder(entries)
    return True
