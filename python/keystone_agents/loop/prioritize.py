"""Prioritize, deterministic: pending tasks ordered by project rank (PROJECTS.yaml `priority`, then list
order; unaffiliated or unknown projects last), then `created_at`, stably; every other status keeps its
place. Workflow and runtime (profile/provider/model/...) come from ordered rules, first match wins, and
never replace what a task already has. Nothing changes → nothing is written."""

from __future__ import annotations

from keystone_agents.config import Rule, RuntimeRule, WorkflowRule
from keystone_agents.taskfile import Entry, TaskFile
from keystone_agents.timeutil import parse_time

RUNTIME_FIELDS = (("profile", "profile"), ("provider", "provider"), ("model", "model"),
                  ("fallback_model", "fallback_model"), ("effort", "effort"))


def matches(rule: Rule, entry: Entry) -> bool:
    if rule.source is not None and entry.get("source") != rule.source:
        return False
    if rule.project is not None and entry.get("project") != rule.project:
        return False
    if rule.keywords:
        haystack = f"{entry.get('name', '')}\n{entry.get('description', '')}".lower()
        if not any(word.lower() in haystack for word in rule.keywords):
            return False
    return True


def apply_rules(tf: TaskFile, workflow_rules: list[WorkflowRule], runtime_rules: list[RuntimeRule]) -> int:
    changed = 0
    for entry in list(tf.valid()):
        if entry.get("status") != "pending":
            continue
        updates = {}
        if not entry.get("workflow"):
            for rule in workflow_rules:
                if rule.workflow and matches(rule, entry):
                    updates["workflow"] = rule.workflow
                    break
        for rule in runtime_rules:
            if matches(rule, entry):
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
