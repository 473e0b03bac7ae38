"""What `validate` checks beyond the schemas: everything the runtime would trip over.

* SCHEDULES.yaml: cron fields out of range (naming the field), unknown time zones (did you mean …), `time`
  with a cron schedule — reported by the SCHEDULES.yaml check itself (scheduler/schedules.py:check_document);
* TASKS.yaml: `project:` not in PROJECTS.yaml (did you mean …), a provider or model that cannot run here
  (the loop's preflight: CLI not on PATH, `openai` without a model, unreadable secret) — a workflow whose
  DeepWork job is not in the agent space is a warning of `validate` itself (commands/validate.py);
* the configuration: the default provider's preflight, source commands (config and PROJECTS.yaml) and MCP
  server commands that are not installed.

Every finding is a Problem `FILE:LINE: FIELD: message; fix: …`.
"""

from __future__ import annotations

import difflib
import os
import shlex
from pathlib import Path
from typing import Any, Callable

from keystone_agents.problems import Problem

def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _locator(path: Path, kind) -> tuple[Any, Callable[[list], int | None]] | None:
    """The round-trip document of a queue file (entries with their lines), or None if it cannot be loaded
    (its own problems are reported by the schema check)."""
    from keystone_agents import queuefile
    from keystone_agents.problems import ValidationFailed

    if not path.is_file():
        return None
    try:
        doc = queuefile.load(path, kind)
    except (ValidationFailed, OSError):
        return None
    return doc, doc._locate


def _valid_entries(doc, key: str):
    for index, entry in enumerate(doc.entries(key)):
        if doc.is_valid(entry):
            yield index, entry


def check_tasks(space, config, preflight) -> list[Problem]:
    from keystone_agents import queuefile
    from keystone_agents.profiles import resolve

    loaded = _locator(space.tasks_file, queuefile.TASKS)
    if loaded is None:
        return []
    doc, locate = loaded
    slugs = project_slugs(space)
    problems: list[Problem] = []
    seen_findings: dict[str, list[int]] = {}  # finding → [index of its problem, tasks sharing it]
    for index, entry in _valid_entries(doc, "tasks"):
        project = entry.get("project")
        if project and slugs is not None and project not in slugs:
            problems.append(Problem(str(doc.path), locate(["tasks", index, "project"]), f"tasks[{index}].project",
                                    f"project {project!r} is not in PROJECTS.yaml; {did_you_mean(project, slugs)}"
                                    "fix: add the project to PROJECTS.yaml or correct the slug"))
        if entry.get("status") not in ("pending", "blocked", "in_progress"):
            continue
        runtime = resolve(config, "execute", dict(entry))
        finding = preflight.check(runtime.provider, runtime.model)
        if finding is None:
            continue
        key = str(finding)
        if key in seen_findings:
            seen_findings[key][1] += 1
            continue
        seen_findings[key] = [len(problems), 1]
        field = "provider" if "provider" in entry else ("model" if "model" in entry else "name")
        problems.append(Problem(str(doc.path), locate(["tasks", index, field]), f"tasks[{index}].{field}",
                                f"{finding.kind}: task {entry.get('name')!r} cannot run here: {finding}"))
    for position, count in seen_findings.values():  # one line per finding, saying how many tasks share it
        if count > 1:
            p = problems[position]
            problems[position] = Problem(p.file, p.line, p.field, p.message + f" (and {count - 1} more task(s))")
    return problems


def project_slugs(space) -> list[str] | None:
    """Slugs of PROJECTS.yaml, or None when it does not exist (then `project:` is not checked)."""
    from keystone_agents.taskfile import read_plain

    if not space.projects_file.exists():
        return None
    try:
        return [e["slug"] for e in read_plain(space.projects_file, "projects")
                if isinstance(e, dict) and isinstance(e.get("slug"), str)]
    except Exception:  # noqa: BLE001 - its own problems are reported by the schema check
        return None


def _program(command: str | list[str]) -> str | None:
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError:
            return None
    else:
        argv = list(command)
    return argv[0] if argv else None


def _missing(program: str, home: Path, env) -> bool:
    from keystone_agents.providers.preflight import find_program

    if os.sep in program and not os.path.isabs(program):
        program = str(home / program)
    return find_program(program, env) is None


def check_config(space, config, config_file: str, preflight, env, locate) -> list[Problem]:
    """The configuration's sources, MCP servers and default provider."""
    from keystone_agents.profiles import resolve

    problems = []
    for index, source in enumerate(config.sources):
        program = _program(source.command)
        if program and _missing(program, space.home, env):
            problems.append(Problem(config_file, locate(["sources", index, "command"]), f"sources[{index}].command",
                                    f"source {source.name!r}: command {program!r} is not installed or not on PATH; "
                                    "fix: install it or correct the command"))
    for name, server in (config.mcp_servers or {}).items():
        command = server.get("command") if isinstance(server, dict) else None
        if isinstance(command, str) and command and _missing(command, space.home, env):
            problems.append(Problem(config_file, locate(["mcpServers", name, "command"]),
                                    f"mcpServers.{name}.command",
                                    f"MCP server {name!r}: command {command!r} is not installed or not on PATH; "
                                    "fix: install it or correct the command"))
    problems += check_policy(config, config_file, locate)
    runtime = resolve(config, "execute", {})
    finding = preflight.check(runtime.provider, runtime.model)
    if finding is not None:
        where = "execute.provider" if config.execute.provider else "defaults.provider"
        problems.append(Problem(config_file, locate(where.split(".")), where,
                                f"{finding.kind}: the default provider {runtime.provider!r} cannot run here: {finding}"))
    return problems


def check_project_sources(space, env) -> list[Problem]:
    from keystone_agents import queuefile

    loaded = _locator(space.projects_file, queuefile.PROJECTS)
    if loaded is None:
        return []
    doc, locate = loaded
    problems = []
    data = doc.data
    spots = []
    for index, source in enumerate(data.get("sources") or []):
        spots.append((["sources", index], source))
    for p_index, project in enumerate(data.get("projects") or []):
        if isinstance(project, dict):
            for index, source in enumerate(project.get("sources") or []):
                spots.append((["projects", p_index, "sources", index], source))
    for path, source in spots:
        if not isinstance(source, dict) or "command" not in source:
            continue
        program = _program(source["command"])
        if program and _missing(program, space.home, env):
            from keystone_agents.queuefile import _field_path

            field = _field_path(path)
            problems.append(Problem(str(doc.path), locate(path + ["command"]), field + ".command",
                                    f"source {source.get('name')!r}: command {program!r} is not installed or not "
                                    "on PATH; fix: install it or correct the command"))
    return problems


def config_locator(path: Path | None) -> Callable[[list], int | None]:
    """Line of a key path in the configuration JSON (JSON is YAML: ruamel knows the positions)."""
    if path is None:
        return lambda _path: None
    try:
        from ruamel.yaml import YAML

        from keystone_agents.queuefile import _line_of

        data = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - positions are a nicety
        return lambda _path: None
    return lambda key_path: _line_of(data, key_path)


def check_policy(config, config_file: str, locate) -> list[Problem]:
    """role/policy: a valid policy (the field named); approval_required needs a coordination backend (approvals
    live on the bus); a policyFile that exists, owned by root and writable by nobody else."""
    import os
    import re

    from keystone_agents.policy import model

    problems: list[Problem] = []
    if not model.configured(config.role, config.policy) and not config.policy_file:
        return problems
    try:
        policy = model.from_document({"agent": config.agent_name, "role": config.role, "policy": config.policy})
    except model.PolicyError as exc:
        text = str(exc)
        field = text.split(":", 1)[0] if re.match(r"^[\w.\[\]-]+:", text) else "policy"
        path = [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", field) if p]
        return [Problem(config_file, locate(path), field, text.split(": ", 1)[-1] + "; fix: see docs/policy.md")]
    # what the agent configured (its rules, default, role overrides) and its role's defaults; a built-in role's
    # own approval_required rules (the coder's force push) are refused like blocked ones without a bus
    tiers = [r.tier for r in policy.rules] + [policy.default]
    for name in (config.policy.get("roles") or {}):
        tiers += [r.get("tier") for r in (config.policy["roles"][name].get("rules") or [])]
    if policy.role is not None:
        tiers += [policy.role.default] + [tier for _, tier in policy.role.tool_defaults]
    if "approval_required" in tiers and config.coordination.backend == "none":
        problems.append(Problem(config_file, locate(["policy"]), "policy",
                                "approval_required needs a coordination backend (approvals wait on the bus), and "
                                "coordination.backend is \"none\"; fix: configure coordination (NixOS: "
                                "keystone.os.agentRuntime.coordination.backend) or use blocked instead"))
    if config.policy_file:
        try:
            info = os.stat(config.policy_file)
        except OSError as exc:
            problems.append(Problem(config_file, locate(["policyFile"]), "policyFile",
                                    f"{config.policy_file}: {exc.strerror}; fix: render it as root with "
                                    "`keystone-agent policy render --out DIR` (NixOS renders it)"))
        else:
            if info.st_uid != 0 or info.st_mode & 0o022:
                problems.append(Problem(config_file, locate(["policyFile"]), "policyFile",
                                        f"{config.policy_file} must be owned by root and writable by nobody else "
                                        "(the agent could change its own policy); fix: chown root and chmod 0444"))
    return problems
