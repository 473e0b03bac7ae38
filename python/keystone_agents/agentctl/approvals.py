"""`agentctl approvals list|show|approve|reject|metrics`: the approval queue, for humans (root and admins).

An agent's action of tier approval_required waits here; approving it wakes the agent through the bus and lets
that one action run once on the retried task (docs/policy.md). The bus refuses a decision from an agent.
"""

from __future__ import annotations

import datetime as dt
import json

import click

from keystone_agents.cli.common import echo_json

STATES = ("pending", "approved", "rejected", "consumed")
LIST_FIELDS = ("id", "agent", "task", "action", "requested_at", "state")


@click.group("approvals")
def approvals_group():
    """Actions of agents waiting for a human's approval (policy tier approval_required)."""


def _bus(ctx, as_json=False):
    from keystone_agents.agentctl.comms import human_bus

    return human_bus(ctx, as_json)


def _summary(item: dict) -> dict:
    return {**{k: item.get(k) for k in LIST_FIELDS}, "rule": item.get("rule"), "decided_by": item.get("decided_by"),
            "decided_at": item.get("decided_at"), "note": item.get("note")}


@approvals_group.command("list")
@click.option("--state", type=click.Choice(STATES + ("all",)), default="pending", show_default=True)
@click.option("--agent", default=None, help="Only this agent's approvals.")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON array of {id, agent, task, action, requested_at, state, rule, decided_by, decided_at, note}.")
@click.pass_context
def list_command(ctx, state, agent, as_json):
    """The approvals (default: the pending ones), oldest first."""
    with _bus(ctx, as_json) as bus:
        items = bus.approvals_list(None if state == "all" else state, agent)
    if as_json:
        echo_json([_summary(i) for i in items])
        return
    if not items:
        click.echo(f"no {'' if state == 'all' else state + ' '}approvals")
        return
    for item in items:
        click.echo(f"{item['id']}  {item['state']:<9} {item['requested_at']}  {item['agent']:<12} "
                   f"{item['task'][:30]:<30}  {item['action'][:100]}")


@approvals_group.command("show")
@click.argument("approval_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_command(ctx, approval_id, as_json):
    """One approval: the action as the CLI gave it, the rule that made it need approval, the decision."""
    with _bus(ctx, as_json) as bus:
        item = bus.approval_get(approval_id)
    if as_json:
        echo_json(item)
        return
    for key in ("id", "agent", "task", "run_id", "action", "rule", "state", "requested_at", "decided_by",
                "decided_at", "note", "consumed_at"):
        if item.get(key) not in (None, ""):
            click.echo(f"{key + ':':<14}{item[key]}")
    click.echo("detail:")
    click.echo(json.dumps(item.get("detail"), indent=2, ensure_ascii=False))


def _decide(ctx, approval_id, approve, note, as_json):
    with _bus(ctx, as_json) as bus:
        item = bus.approval_decide(approval_id, approve, note)
    if as_json:
        echo_json(_summary(item))
    else:
        verb = "approved" if approve else "rejected"
        click.echo(f"{verb} {item['id']} ({item['agent']}: {item['action'][:100]}); "
                   + ("the agent is woken and may run it once" if approve else "the task stays blocked"))


@approvals_group.command("approve")
@click.argument("approval_id", metavar="ID")
@click.option("--note", default=None, help="Why (recorded in the audit log and shown to the agent).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def approve_command(ctx, approval_id, note, as_json):
    """Approve: the agent is woken and its retried task may run that one action once."""
    _decide(ctx, approval_id, True, note, as_json)


@approvals_group.command("reject")
@click.argument("approval_id", metavar="ID")
@click.option("--note", default=None, help="Why (recorded in the audit log and in the task's blocked_reason).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reject_command(ctx, approval_id, note, as_json):
    """Reject: the task stays blocked, its blocked_reason says who rejected it and why."""
    _decide(ctx, approval_id, False, note, as_json)


def metrics_text(items: list[dict], now: dt.datetime | None = None) -> str:
    """Prometheus text: pending approvals per agent and the age of the oldest one."""
    import socket

    now = now or dt.datetime.now(dt.timezone.utc)
    host = socket.gethostname().split(".")[0]
    per_agent: dict[str, list[float]] = {}
    for item in items:
        if item.get("state") != "pending":
            continue
        at = dt.datetime.fromisoformat(str(item["requested_at"]).replace("Z", "+00:00"))
        per_agent.setdefault(item["agent"], []).append(max(0.0, (now - at).total_seconds()))
    lines = ["# HELP keystone_approvals_pending Actions of this agent waiting for a human's approval.",
             "# TYPE keystone_approvals_pending gauge"]
    lines += [f'keystone_approvals_pending{{host="{host}",agent="{a}"}} {len(v)}' for a, v in sorted(per_agent.items())]
    lines += ["# HELP keystone_approvals_oldest_pending_age_seconds Age of the agent's oldest pending approval.",
              "# TYPE keystone_approvals_oldest_pending_age_seconds gauge"]
    lines += [f'keystone_approvals_oldest_pending_age_seconds{{host="{host}",agent="{a}"}} {max(v):.3f}'
              for a, v in sorted(per_agent.items())]
    lines += ["# HELP keystone_approvals_pending_total Pending approvals of all agents.",
              "# TYPE keystone_approvals_pending_total gauge",
              f'keystone_approvals_pending_total{{host="{host}"}} {sum(len(v) for v in per_agent.values())}']
    return "\n".join(lines) + "\n"


@approvals_group.command("metrics")
@click.option("--textfile", default=None, type=click.Path(dir_okay=False),
              help="Write them atomically to this node_exporter textfile (default: print them).")
@click.pass_context
def metrics_command(ctx, textfile):
    """Pending approvals as Prometheus metrics (the keystone-approvals-metrics timer writes them every minute)."""
    with _bus(ctx) as bus:
        text = metrics_text(bus.approvals_list("pending", None))
    if textfile:
        from keystone_agents.atomic import write_atomic

        write_atomic(textfile, text, mode=0o644)
    else:
        click.echo(text, nl=False)
