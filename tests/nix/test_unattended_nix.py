"""The NixOS module's part of unattended operation: the runtime learns each timer's interval (for missed-run
detection) from its OnCalendar, and the watchdog, turn limit and budgets reach the agent's JSON."""

from __future__ import annotations

import pytest

from tests.nix.test_nix_module import valid_agent_config


@pytest.mark.parametrize("on_calendar,expected", [
    ("*:0/5", 300), ("*:00/15", 900), ("*-*-* *:0/10", 600), ("*:*:0/30", 30), ("hourly", 3600),
    ("*:20", 3600), ("*-*-* 05:00:00", 86400), ("06:30", 86400), ("daily", 86400), ("weekly", 604800),
    ("Mon..Fri 09:00", None), ("*-*-01 00:00:00", None),
])
def test_expected_interval_from_on_calendar(evaluate, on_calendar, expected):
    ev = evaluate('{ networking.hostName = "ocean"; keystone.os.agents.drago.notes.taskLoop.onCalendar = "%s"; }'
                  % on_calendar)
    assert ev["failedAssertions"] == []
    config = valid_agent_config(ev, "drago")
    assert config["expectedIntervalSeconds"] == expected


def test_defaults_and_settings_reach_the_config(evaluate):
    ev = evaluate('{ networking.hostName = "ocean"; keystone.os.agents.drago = { }; }')
    config = valid_agent_config(ev, "drago")
    assert config["expectedIntervalSeconds"] == 300  # the default *:0/5
    assert config["scheduler"]["expectedIntervalSeconds"] == 86400  # the default *-*-* 05:00:00
    assert (config["stallTimeoutSeconds"], config["maxTurns"], config["budgets"]) == (600, None, {})
    ev = evaluate('''{
      networking.hostName = "ocean";
      keystone.os.agents.drago.notes.taskLoop = {
        stallTimeout = 120; maxTurns = 40; expectedInterval = 420;
        budgets = { dailyCostUsd = 20; monthlyTokens = 50000000; };
      };
    }''')
    config = valid_agent_config(ev, "drago")
    assert (config["stallTimeoutSeconds"], config["maxTurns"], config["expectedIntervalSeconds"]) == (120, 40, 420)
    assert config["budgets"] == {"dailyCostUsd": 20, "monthlyTokens": 50000000}
