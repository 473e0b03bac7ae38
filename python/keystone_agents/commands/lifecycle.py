"""keystone-agent kill and keystone-agent continue: the lifecycle verbs behind `agentctl AGENT kill` and
`agentctl AGENT resume TASK` (docs/exec-modes.md)."""

from __future__ import annotations

import sys
import time

import click

from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command, echo_json
from keystone_agents.loop.execute import KILL_MARKER


@click.command("kill")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=30, show_default=True,
              help="Seconds to wait for the loop to record the killed execution.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@agent_command
def kill_command(ctx, wait_seconds, as_json):
    """Stop the running execution: its provider's whole process group (SIGTERM, then SIGKILL after
    killGraceSeconds). The loop records the attempt (outcome failed, reason killed) and puts the task back to
    pending without counting it against maxAttempts; the agent's timers and units stay as they are.
    Exit 1 when nothing is executing."""
    from keystone_agents.loop.state import read_json, remove, write_json
    from keystone_agents.providers.process import group_alive, kill_group

    space, config = ctx.space, ctx.config
    running = read_json(space.state_dir / "running.json")
    pgid = running.get("pgid") if isinstance(running, dict) else None
    if not isinstance(pgid, int) or not group_alive(pgid):
        message = "nothing is executing (no running provider process group)"
        if as_json:
            echo_json({"killed": False, "message": message})
        else:
            click.echo(message, err=True)
        sys.exit(EXIT_PROBLEMS)
    task = running.get("task")
    write_json(space.state_dir / KILL_MARKER, {"pgid": pgid, "task": task, "at": time.time()})
    kill_group(pgid, config.kill_grace_seconds)
    deadline = time.monotonic() + wait_seconds
    recorded = False
    while time.monotonic() < deadline:  # the loop notices, records the attempt and rewrites running.json
        now = read_json(space.state_dir / "running.json")
        if not isinstance(now, dict) or now.get("pgid") != pgid:
            recorded = True
            break
        time.sleep(0.1)
    if not recorded:
        remove(space.state_dir / KILL_MARKER)
    result = {"killed": True, "task": task, "pgid": pgid, "recorded": recorded, "processesLeft": group_alive(pgid)}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"killed task {task} (process group {pgid})" + (
            "; back to pending" if recorded else "; the loop did not record it yet (the next run recovers it)"))


@click.command("continue")
@click.argument("task")
@click.option("--prompt", metavar="TEXT", help="Words for the agent, added to the continuation guidance.")
@agent_command
def continue_command(ctx, task, prompt):
    """Continue TASK now in the CLI session its last execution used (claude --resume, codex exec resume,
    gemini --resume; a re-prompt for command/openai), with continuation guidance only — e.g. a task blocked
    with reason max-auto-turns. The task is executed in the foreground like `loop --task`."""
    from keystone_agents.loop.runner import run

    sys.exit(run(ctx.home, ctx.config_path, only_task=task, resume={"task": task, "prompt": prompt}))
