"""Spend ceilings, checked against the run history BEFORE a provider is started.

A ceiling that is already reached refuses the invocation: what a call will cost is unknown until it ran, so
the only ceiling that cannot be overshot by more than one call is one checked before every call. Per task
(all its executions), per agent per UTC day and per UTC calendar month, in tokens and in reported dollars
(providers that report no cost count as 0 dollars).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from keystone_agents import history
from keystone_agents.timeutil import iso_z


@dataclass(frozen=True)
class Refusal:
    scope: str  # task | daily | monthly
    unit: str  # tokens | usd
    used: float
    limit: float

    @property
    def reason(self) -> str:
        return f"budget:{self.scope}-{'tokens' if self.unit == 'tokens' else 'cost'}"

    @property
    def agent_wide(self) -> bool:
        return self.scope != "task"

    def describe(self) -> str:
        what = {"task": "this task's", "daily": "today's (UTC)", "monthly": "this month's (UTC)"}[self.scope]
        if self.unit == "tokens":
            return f"{what} token budget is used up: {int(self.used)} of {int(self.limit)} tokens"
        return f"{what} cost budget is used up: ${self.used:.4f} of ${self.limit:.4f}"


def period_starts(now: dt.datetime) -> tuple[str, str]:
    """(start of the UTC day, start of the UTC month) as the history's ISO strings."""
    now = now.astimezone(dt.timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return iso_z(day), iso_z(day.replace(day=1))


def check(conn, budgets, task: str, now: dt.datetime | None = None) -> Refusal | None:
    """The first ceiling `task` would start over, or None. Agent-wide ceilings are checked first (they stop
    the whole execute stage)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    day, month = period_starts(now)
    checks = (
        ("daily", day, None, budgets.daily_tokens, budgets.daily_cost_usd),
        ("monthly", month, None, budgets.monthly_tokens, budgets.monthly_cost_usd),
        ("task", None, task, budgets.task_tokens, budgets.task_cost_usd),
    )
    for scope, since, name, tokens_limit, cost_limit in checks:
        if tokens_limit is None and cost_limit is None:
            continue
        tokens, cost = history.spend(conn, since=since, task=name)
        if tokens_limit is not None and tokens >= tokens_limit:
            return Refusal(scope, "tokens", tokens, tokens_limit)
        if cost_limit is not None and cost >= cost_limit:
            return Refusal(scope, "usd", cost, cost_limit)
    return None


def configured(budgets) -> bool:
    return any(v is not None for v in (budgets.task_tokens, budgets.task_cost_usd, budgets.daily_tokens,
                                       budgets.daily_cost_usd, budgets.monthly_tokens, budgets.monthly_cost_usd))
