"""keystone-agent validate: check every queue file and the configuration — and everything the runtime would
trip over (validation.py) — and print every problem."""

from __future__ import annotations

import sys

import click

from keystone_agents import queuefile
from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command, echo_json
from keystone_agents.problems import Problem, ValidationFailed


@click.command("validate")
@click.option("--json", "as_json", is_flag=True, help="Print the problems as a JSON list.")
@click.option("--no-connect", is_flag=True, help="Do not open a connection to an HTTP provider (openai) to see "
                                                  "whether it answers.")
@agent_command
def validate_command(ctx, as_json, no_connect):
    """Check TASKS.yaml, PROJECTS.yaml, SCHEDULES.yaml, ISSUES.yaml, TASKS.archive.yaml and the
    configuration, and what the runtime would trip over: cron fields out of range, unknown time zones,
    `time` with a cron schedule, a task's project not in PROJECTS.yaml, a provider or model that cannot run
    here (CLI not on PATH, openai without a model), source and MCP server commands not installed.

    Prints every problem as FILE:LINE: FIELD: MESSAGE (with the fix, and "did you mean …" for unknown
    keys and names); the summary names the files that have problems. Exit 1 if there is any, also when
    the directory is not an agent home ("no agent home at DIR"). Tasks whose workflow's DeepWork job is
    not in the agent space (.deepwork/jobs/<job>) are reported as warnings ("warning: ..."; severity
    "warning" with --json) and do not change the exit code."""
    from keystone_agents.home_check import home_problem

    problem = home_problem(ctx.home_dir, ctx.config_path)
    if problem:
        click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_PROBLEMS)
    problems: list[Problem] = []
    try:
        config = ctx.config
    except ValidationFailed as exc:
        problems.extend(exc.problems)
        config = None
    if config is not None:
        from keystone_agents.modes import config_problems

        problems.extend(config_problems(config, str(ctx.config_path or config.source_path or "<config>")))
    space = ctx.space if config else None
    if space is None:
        from keystone_agents.space import AgentSpace

        space = AgentSpace.from_home(ctx.home)
    files = space.queue_files() + [(space.tasks_archive_file, queuefile.TASKS)]
    for path, kind in files:
        if path.exists() or path.is_symlink():
            problems.extend(_check(path, kind))
    if config is not None:
        problems.extend(_runtime_checks(space, config, connect=not no_connect))
    warnings = _missing_jobs(space) if space.tasks_file.is_file() else []
    if as_json:
        echo_json([{**p.as_dict(), "severity": "error"} for p in problems]
                  + [{**w.as_dict(), "severity": "warning"} for w in warnings])
    else:
        for found in problems:
            click.echo(str(found))
        for warning in warnings:
            click.echo(f"warning: {warning}")
        checked = [p.name for p, _ in files if p.exists()]
        config_file = ctx.config_path or (config.source_path if config else None)
        if config_file:
            checked.append(str(config_file))
        if problems:
            with_problems = list(dict.fromkeys(_short(p.file, space) for p in problems))
            click.echo(f"{len(problems)} problem(s) in {', '.join(with_problems)}", err=True)
        else:
            click.echo(f"ok: {', '.join(checked) or 'built-in defaults'}", err=True)
    if problems:
        sys.exit(EXIT_PROBLEMS)


def _short(file: str, space) -> str:
    """TASKS.yaml for the home's queue files (as the ok: summary names them), else the path."""
    from pathlib import Path

    path = Path(file)
    return path.name if path.parent == space.home else file


def _runtime_checks(space, config, connect: bool) -> list[Problem]:
    from keystone_agents import validation
    from keystone_agents.loop.settings import env_for_children
    from keystone_agents.providers.environment import clean_env
    from keystone_agents.providers.preflight import Preflight

    provider_env = clean_env(config.environment)
    preflight = Preflight(config, provider_env, space, connect=connect)
    env = env_for_children(config)
    config_file = str(config.source_path) if config.source_path else "<built-in configuration>"
    locate = validation.config_locator(config.source_path)
    return (validation.check_config(space, config, config_file, preflight, env, locate)
            + validation.check_tasks(space, config, preflight)
            + validation.check_project_sources(space, env))


def _missing_jobs(space) -> list[Problem]:
    """Warnings (not errors: the task still runs, its prompt starts with /deepwork job/workflow): tasks whose
    workflow's DeepWork job is not in the agent space's .deepwork/jobs/."""
    from keystone_agents.taskfile import TaskFile

    try:
        tf = TaskFile.load(space.tasks_file)
    except ValidationFailed:
        return []
    found = []
    for index, entry in enumerate(tf.entries):
        workflow = entry.get("workflow")
        if entry.valid and isinstance(workflow, str) and entry.get("status") != "completed" \
                and not space.deepwork_job_dir(workflow).is_dir():
            found.append(Problem(str(space.tasks_file), entry.line, f"tasks[{index}].workflow",
                                 f"DeepWork job {workflow.split('/', 1)[0]!r} of workflow {workflow!r} is not in the "
                                 f"agent space ({space.deepwork_job_dir(workflow)})"))
    return found


def _check(path, kind):
    """Every problem of one file. TASKS.yaml and its archive are read as the loop reads them (taskfile: fast
    for big queues); the other files with the round-trip loader. Both report through the same schema messages."""
    if kind is queuefile.SCHEDULES:
        try:
            doc = queuefile.load(path, kind)
        except ValidationFailed as exc:
            return exc.problems
        from keystone_agents.scheduler.schedules import check_document

        return doc.problems + check_document(doc)
    if kind is not queuefile.TASKS:
        return queuefile.check(path, kind)
    from keystone_agents.taskfile import TaskFile

    try:
        return TaskFile.load(path).problems
    except ValidationFailed as exc:
        return exc.problems
    except OSError as exc:
        return [Problem(str(path), None, "", f"cannot read: {exc.strerror or exc}")]
