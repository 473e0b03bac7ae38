"""`keystone-agent policy check|explain|render|roles`: the policy tiers of an agent's tool calls (docs/policy.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from keystone_agents.cli.common import AgentContext, agent_command, echo_json


@click.group("policy")
def policy_command():
    """Roles and policy tiers: the pre-tool hook of the provider CLIs, and what it would decide."""


@policy_command.command("check")
@click.option("--cli", "cli_name", type=click.Choice(["claude", "codex", "gemini"]), required=True,
              help="Which CLI calls the hook (its input and answer formats differ).")
@click.option("--policy", "policy_file", default=None, metavar="FILE",
              help="The rendered policy.json (root-owned; default: the agent's configuration).")
@click.option("--config", "config_file", default=None, metavar="FILE", help="The agent's configuration.")
def check_command(cli_name, policy_file, config_file):
    """The pre-tool hook: read the CLI's hook input (JSON) on stdin, answer allow/deny in the CLI's terms.

    Exit 0 with the CLI's decision JSON (claude: hookSpecificOutput.permissionDecision; gemini: decision), or
    exit 2 with the reason on stderr (codex's deny, and every error: the hook fails closed)."""
    from keystone_agents.policy import hook

    hook.main(cli_name, policy_file, config_file)


@policy_command.command("explain")
@click.argument("kind", type=click.Choice(["shell", "file.read", "file.write", "web.fetch", "mcp", "act"]))
@click.argument("target")
@click.option("--policy", "policy_file", default=None, metavar="FILE", help="A rendered policy.json.")
@click.option("--project", default=None, help="The task's project (for project rules).")
@click.option("--json", "as_json", is_flag=True)
@agent_command
def explain_command(ctx: AgentContext, kind, target, policy_file, project, as_json):
    """What the agent's policy decides for one action, and which rule decides it, e.g.
    `keystone-agent policy explain shell 'git push origin main'`."""
    from keystone_agents.policy import model

    policy = _policy(ctx, policy_file)
    decision = policy.decide(model.Action(kind, target), project)
    data = {"action": f"{kind}:{target}", "tier": decision.tier, "rule": decision.rule,
            "parts": [{"action": a.key(), "tier": t, "rule": r} for a, t, r in decision.parts]}
    if as_json:
        echo_json(data)
    else:
        click.echo(f"{decision.tier}  ({decision.rule})")
        for part in data["parts"][1:]:
            click.echo(f"  {part['action']}: {part['tier']} ({part['rule']})")


@policy_command.command("roles")
@click.option("--json", "as_json", is_flag=True)
def roles_command(as_json):
    """The built-in role catalog: each role's default tier and rules."""
    from keystone_agents.policy.model import BUILTIN_ROLES

    data = {name: {"default": role.default, "description": role.description,
                   "rules": [{"match": r.match, "tier": r.tier} for r in role.rules]}
            for name, role in BUILTIN_ROLES.items()}
    if as_json:
        echo_json(data)
        return
    for name, role in data.items():
        click.echo(f"{name}: default {role['default']} — {role['description']}")
        for rule in role["rules"]:
            click.echo(f"    {json.dumps(rule['match'], sort_keys=True)} → {rule['tier']}")


@policy_command.command("render")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for policy.json and the CLI settings (root-owned, e.g. /etc/keystone-agents/agents/NAME).")
@click.option("--agent-home", "agent_home", default=None, help="The agent's home (expands ~ in rules; default: --home).")
@click.option("--keystone-agent", "program", default="keystone-agent", show_default=True,
              help="The keystone-agent the hooks run (an absolute path on hosts whose PATH the agent controls).")
@click.option("--from-policy", "from_policy", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Render the CLI settings of this policy.json (what the NixOS module writes) instead of the "
                   "agent's configuration; policy.json itself is not written.")
@click.option("--policy-path", default=None, metavar="PATH",
              help="Where the hooks find policy.json at run time (default: DIR/policy.json).")
@click.option("--json", "as_json", is_flag=True)
@agent_command
def render_command(ctx: AgentContext, out_dir, agent_home, program, from_policy, policy_path, as_json):
    """Write the agent's policy.json, claude-settings.json and gemini-settings.json into --out (as root on hosts
    without the NixOS module; the runtime config's `policyFile` names the policy.json)."""
    from keystone_agents.policy import model, render

    try:
        if from_policy is not None:
            doc = model.load_file(from_policy)
            written = render.write_settings(out_dir, doc, policy_path or out_dir / render.POLICY, program)
        else:
            written = render.write_all(out_dir, ctx.config, home=agent_home or str(ctx.home_dir),
                                       program=program)
    except (model.PolicyError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json({"written": [str(p) for p in written]})
    else:
        for path in written:
            click.echo(str(path))


def _policy(ctx, policy_file):
    from keystone_agents.policy import model

    try:
        if policy_file:
            doc = model.load_file(policy_file)
            return model.from_document(doc, home=str(doc.get("home") or os.path.expanduser("~")))
        config = ctx.config
        return model.from_document({"agent": config.agent_name, "role": config.role, "policy": config.policy},
                                   home=str(ctx.home_dir))
    except (model.PolicyError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
