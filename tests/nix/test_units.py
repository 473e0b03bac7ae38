"""The rendered units the real-host suite lays out (tests/realhost/units.snapshot.json) are what the module
renders now: a change to the module's units without `scripts/gen-nixos-docs` fails here."""

from __future__ import annotations

import json

from tests.support import units


def test_the_units_snapshot_is_current(nixpkgs_lib):
    current = units.evaluate_snapshot(nixpkgs_lib)
    stored = units.load_snapshot()
    assert stored == json.loads(json.dumps(current)), "tests/realhost/units.snapshot.json is stale: run scripts/gen-nixos-docs"


def test_the_snapshot_renders_units_as_nixos_does(nixpkgs_lib):
    text = units.load_snapshot()["user"]["agent-drago-task-loop.timer"]
    assert text.splitlines()[:2] == ["[Unit]", "ConditionUser=agent-drago"]
    assert "[Timer]" in text and "Persistent=true" in text and "[Install]" not in text  # wantedBy: symlinks
    service = units.load_snapshot()["system"]["agent-drago-labwc.service"]
    assert 'Environment="WLR_BACKENDS=headless"' in service and "SystemCallFilter=@system-service" in service
