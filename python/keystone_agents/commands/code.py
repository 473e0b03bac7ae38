"""keystone-agent code: the coding subagent (branch, provider commits, push, draft PR, review cycles)."""

from __future__ import annotations

import sys

import click

from keystone_agents.cli.output import output_options
from keystone_agents.cli.common import agent_command, echo_json
from keystone_agents.coding.forge import FORGES
from keystone_agents.coding.orchestrator import CodeRequest, run_code
from keystone_agents.coding.providers import PROVIDERS
from keystone_agents.coding.repo import PREFIXES


@click.command("code")
@click.option("--repo", required=True, metavar="OWNER/REPO", help="Repository; cloned to ~/.repos/OWNER/REPO when absent.")
@click.option("--task", metavar="TEXT", help="What to change (required unless --review-only); `-` reads it from stdin "
              "(the task loop does so for a task too long for one argument).")
@click.option("--branch", metavar="PREFIX/NAME", help="Branch to create (default: <prefix>/<slug of the task>, ≤ 40 characters).")
@click.option("--prefix", type=click.Choice(PREFIXES), default="feature", show_default=True, help="Prefix of the generated branch name.")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Coding CLI (default: coding.provider, else the execute stage's provider).")
@click.option("--model", metavar="M", help="Model of the coding CLI (default: coding.model, else the execute stage's model).")
@click.option("--max-review-cycles", type=click.IntRange(min=0), metavar="N", help="Review cycles after the draft PR (default: coding.maxReviewCycles = 2).")
@click.option("--review-only", type=click.IntRange(min=1), metavar="PR", help="Only review pull request PR and print the review (nothing is changed or posted).")
@click.option("--skip-review", is_flag=True, help="Open the draft pull request and stop.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S", help="Limit of each provider run in seconds (default: coding.timeoutSeconds = 600).")
@click.option("--forge", type=click.Choice(FORGES), help="github or forgejo (default: coding.forge, else from the clone's origin).")
@click.option("--json", "as_json", is_flag=True, help="Print {outcome, pr_url, cycles, verdicts, commits, branch, ...} as JSON.")
@output_options
@agent_command
def code_command(ctx, repo, task, branch, prefix, provider, model, max_review_cycles, review_only, skip_review, timeout,
                 forge, as_json):
    """Have a coding CLI implement TASK in OWNER/REPO and open a draft pull request, then review it.

    The orchestrator does every git and forge operation: it refuses a dirty clone, fast-forwards the
    default branch, creates the branch, runs the provider (claude, codex or gemini) which only commits,
    pushes, opens a draft pull request (GitHub via gh, Forgejo via its API with a WIP: title), and runs up
    to N review cycles: comments are posted, a FAIL gets a fix round, a PASS marks the pull request ready.
    The clone always ends on its default branch.

    Outcomes and exit codes: ready, draft, reviewed → 0; failed (no commit), error → 1; blocked (the
    subagent wrote BLOCKED.md) → 3.
    """
    if task == "-":
        task = sys.stdin.read()
    request = CodeRequest(
        repo=repo, task=task, branch=branch, prefix=prefix, provider=provider, model=model,
        max_review_cycles=max_review_cycles, review_only=review_only, skip_review=skip_review, timeout=timeout,
        forge=forge,
    )
    result = run_code(request, ctx.config, ctx.space, stream=sys.stderr)
    write_task_result(result)
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(f"outcome: {result.outcome}")
        for label, value in (("branch", result.branch), ("pull request", result.pr_url),
                             ("verdicts", ", ".join(result.verdicts) or None), ("commits", result.commits or None),
                             ("blocked", result.blocked_reason), ("message", result.message), ("log", result.log_file)):
            if value:
                click.echo(f"{label}: {value}")
        if result.review:
            click.echo("")
            click.echo(result.review["output"].rstrip())
    sys.exit(result.exit_code)


def write_task_result(result) -> None:
    """Inside the task loop (KEYSTONE_TASK_RESULT set), report the outcome the way an agent does: completed with
    the pull request, or blocked with BLOCKED.md's text. Failures write nothing: the exit code says it."""
    import json
    import os

    from keystone_agents.atomic import write_atomic

    path = os.environ.get("KEYSTONE_TASK_RESULT")
    if not path or result.outcome not in ("ready", "draft", "reviewed", "blocked"):
        return
    if result.outcome == "blocked":
        report = {"status": "blocked", "message": "the coding subagent is blocked",
                  "blocked_reason": (result.blocked_reason or "BLOCKED.md written")[:2000]}
    else:
        verdicts = ", ".join(result.verdicts) or "no review"
        report = {"status": "completed", "message": f"pull request {result.outcome} ({verdicts})"}
    report["pull_requests_created"] = [result.pr_url] if result.pr_url else []
    report["issues_created"] = []
    write_atomic(path, json.dumps(report))
