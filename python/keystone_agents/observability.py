"""The shipped monitoring artefacts: the Grafana dashboard, the Prometheus alert rules (a template whose
`@name@` placeholders are documented parameters), and the journald → Loki recipe (docs/observability.md).

    python -m keystone_agents.observability rules [--set blockedThreshold=10 ...]   # rendered rules on stdout
    python -m keystone_agents.observability dashboard                                # the dashboard's path

The NixOS module renders the same template with the same parameter names (modules/os/agents/observability.nix);
a test checks that both renderings agree.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from keystone_agents.templates import templates_dir

# parameter → (default, meaning); the NixOS options keystone.os.observability.agents.alerts.<name> match
RULE_PARAMETERS: dict[str, tuple[object, str]] = {
    "stalledAfterSeconds": (7200, "KeystoneAgentStalled: seconds without a successful task-loop run"),
    "blockedThreshold": (5, "KeystoneAgentBlockedSurge: fires above this many blocked tasks"),
    "tokenSpendThreshold": (2000000, "KeystoneAgentTokenSpend: fires above this many tokens per window"),
    "tokenSpendWindow": ("24h", "KeystoneAgentTokenSpend: the window (a Prometheus duration)"),
    "approvalPendingSeconds": (1800, "KeystoneApprovalPending: fires when an approval waits longer than this"),
}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
PLACEHOLDER = re.compile("@(" + "|".join(RULE_PARAMETERS) + ")@")


def rules_template() -> Path:
    return templates_dir() / "prometheus" / "keystone-agents.rules.yml.in"


def dashboard_path() -> Path:
    return templates_dir() / "grafana" / "keystone-agents.json"


def alloy_recipe_path() -> Path:
    return templates_dir() / "loki" / "keystone-agents.alloy"


def _check(name: str, value: object) -> str:
    default = RULE_PARAMETERS[name][0]
    text = str(value).strip()
    if isinstance(default, int):
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
            raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
    elif not DURATION.match(text):
        raise ValueError(f"{name}: expected a Prometheus duration such as 24h or 90m, got {value!r}")
    return text


def render_rules(**parameters: object) -> str:
    """The alert rules with each `@name@` replaced by `parameters[name]`, else its default."""
    unknown = set(parameters) - set(RULE_PARAMETERS)
    if unknown:
        raise ValueError(f"unknown rule parameter(s): {', '.join(sorted(unknown))} (known: {', '.join(RULE_PARAMETERS)})")
    values = {name: _check(name, parameters.get(name, default)) for name, (default, _) in RULE_PARAMETERS.items()}
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], rules_template().read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keystone_agents.observability", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rules = sub.add_parser("rules", help="print the alert rules, parameters filled in")
    rules.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="a parameter: " + "; ".join(f"{n} (default {d}): {m}" for n, (d, m) in RULE_PARAMETERS.items()))
    sub.add_parser("dashboard", help="print the path of the Grafana dashboard JSON")
    sub.add_parser("alloy", help="print the path of the journald → Loki recipe for Grafana Alloy")
    args = parser.parse_args(argv)
    if args.what == "dashboard":
        print(dashboard_path())
    elif args.what == "alloy":
        print(alloy_recipe_path())
    else:
        try:
            values = dict(item.split("=", 1) for item in args.set)
            sys.stdout.write(render_rules(**values))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
