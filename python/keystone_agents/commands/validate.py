"""keystone-agent validate: check every queue file and the configuration, print every problem."""

from __future__ import annotations

import sys

import click

from keystone_agents import queuefile
from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command, echo_json
from keystone_agents.problems import Problem, ValidationFailed


@click.command("validate")
@click.option("--json", "as_json", is_flag=True, help="Print the problems as a JSON list.")
@agent_command
def validate_command(ctx, as_json):
    """Check TASKS.yaml, PROJECTS.yaml, SCHEDULES.yaml, ISSUES.yaml, TASKS.archive.yaml and the
    configuration. Prints every problem as FILE:LINE: FIELD: MESSAGE; exit 1 if there is any. Tasks whose
    workflow's DeepWork job is not in the agent space (.deepwork/jobs/<job>) are reported as warnings
    ("warning: ..."; severity "warning" with --json) and do not change the exit code."""
    problems = []
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
        if path.exists():
            problems.extend(_check(path, kind))
    warnings = _missing_jobs(space) if space.tasks_file.exists() else []
    if as_json:
        echo_json([{**p.as_dict(), "severity": "error"} for p in problems]
                  + [{**w.as_dict(), "severity": "warning"} for w in warnings])
    else:
        for problem in problems:
            click.echo(str(problem))
        for warning in warnings:
            click.echo(f"warning: {warning}")
        checked = [p.name for p, _ in files if p.exists()]
        if ctx.config_path or (config and config.source_path):
            checked.append(str(ctx.config_path or config.source_path))
        summary = f"{len(problems)} problem(s) in {', '.join(checked)}" if problems else f"ok: {', '.join(checked)}"
        click.echo(summary, err=True)
    if problems:
        sys.exit(EXIT_PROBLEMS)


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
