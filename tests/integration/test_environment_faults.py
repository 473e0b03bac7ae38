"""Environmental faults are not task faults (issue 21): a provider that cannot run on this machine leaves its
tasks untouched — no status, no attempt count changes — with a `provider_unavailable` / `environment_error`
event; the run ends `error` when nothing could run, `degraded` when other tasks ran."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.loop import events, make_home


@pytest.fixture
def lh(tmp_path, clean_env):
    return make_home(tmp_path)


def no_fakebin_path() -> str:
    """A PATH with the venv and the system, but none of the stand-in provider CLIs."""
    return f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"


def attempts(lh) -> dict[str, int]:
    db = lh.state / "history.sqlite3"
    if not db.exists():
        return {}
    conn = sqlite3.connect(db)
    rows = dict(conn.execute("SELECT task, failures FROM task_attempts").fetchall())
    conn.close()
    return rows


SEVEN = "tasks:\n" + "".join(f"  - name: t{i}\n    description: task {i}\n    status: pending\n" for i in range(7))


def test_no_provider_on_path_five_runs_leave_every_task_untouched(lh):
    lh.write_tasks(SEVEN)
    before = yaml.safe_load(lh.tasks.read_text())
    for number in range(5):
        result = lh.loop(PATH=no_fakebin_path())
        assert result.returncode == 1, (number, result.stderr)
        [finish] = events(result.stderr, "run_finish")
        assert finish["status"] == "error"
        unavailable = events(result.stderr, "provider_unavailable")
        assert {e["task_name"] for e in unavailable} == {f"t{i}" for i in range(7)}
        assert "'claude'" in unavailable[0]["cause"] and "not on PATH" in unavailable[0]["cause"]
        assert "install claude" in unavailable[0]["fix"]
        assert not events(result.stderr, "task_start")
    assert yaml.safe_load(lh.tasks.read_text()) == before  # no status, no started_at, nothing
    assert attempts(lh) == {}
    metrics = lh.metrics()
    assert metrics["keystone_agent_task_loop_last_exit_code"] == 1
    assert metrics["keystone_agent_task_loop_tasks_unavailable_total"] == 7
    assert metrics["keystone_agent_task_loop_tasks_failed_total"] == 0
    assert not lh.calls()


def test_tasks_whose_provider_works_still_run_and_the_run_is_degraded(lh):
    lh.config(commandProvider={"argv": [sys.executable, "-c", "import sys; sys.stdin.read(); print('done')"]})
    lh.write_tasks("""
        tasks:
          - name: needs-claude
            description: uses the default provider
            status: pending
          - name: local
            description: uses the command provider
            status: pending
            provider: command
    """)
    result = lh.loop(PATH=no_fakebin_path())
    assert result.returncode == 3, result.stderr
    assert lh.task("local")["status"] == "completed"
    assert lh.task("needs-claude") == {"name": "needs-claude", "description": "uses the default provider",
                                       "status": "pending"}
    [event] = events(result.stderr, "provider_unavailable")
    assert event["task_name"] == "needs-claude" and event["provider"] == "claude"
    assert events(result.stderr, "run_finish")[0]["status"] == "degraded"
    assert attempts(lh) == {}


def test_openai_without_model_and_refusing_endpoint_and_unreadable_secret(lh, tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    lh.config(openaiProvider={"baseUrl": f"http://127.0.0.1:{port}/v1"})
    lh.write_tasks("""
        tasks:
          - name: no-model
            description: x
            status: pending
            provider: openai
          - name: refused
            description: y
            status: pending
            provider: openai
            model: llama3
    """)
    result = lh.loop()
    assert result.returncode == 1, result.stderr
    found = {e["task_name"]: e for e in events(result.stderr, "provider_unavailable")}
    assert "no model" in found["no-model"]["cause"]
    assert f"127.0.0.1:{port}" in found["refused"]["cause"]
    assert {t["status"] for t in lh.task_list()} == {"pending"}

    lh.config(openaiProvider={"baseUrl": f"http://127.0.0.1:{port}/v1", "apiKeyFile": str(tmp_path / "nope")})
    result = lh.loop()
    [env_error] = events(result.stderr, "environment_error")
    assert env_error["task_name"] == "refused" and "secret file" in env_error["cause"]
    assert "does not exist" in env_error["cause"] and "provision" in env_error["fix"]
    assert attempts(lh) == {}


def test_dry_run_reports_the_same_preflight(lh):
    lh.write_tasks(SEVEN)
    result = lh.loop("--dry-run", PATH=no_fakebin_path())
    assert result.returncode == 1
    assert len(events(result.stderr, "provider_unavailable")) == 7


# ---------------------------------------------------------------- monitoring sees a run that cannot start


def test_invalid_config_still_writes_history_event_and_metrics(lh, tmp_path):
    prom = tmp_path / "unit-textfiles"
    (lh.home / ".config/keystone-agent/config.json").write_text('{"agentName": "demo", "maxTasks": -4}')
    result = lh.loop(PROMETHEUS_TEXTFILE_DIR=str(prom), USER="agent-helper-bot")
    assert result.returncode == 1
    assert "maxTasks" in result.stderr and "Traceback" not in result.stderr
    [invalid] = events(result.stderr, "config_invalid")
    assert invalid["field"] == "maxTasks" and invalid["file"].endswith("config.json") and invalid["line"] == "1"
    [finish] = events(result.stderr, "run_finish")
    assert (finish["status"], finish["exit_code"], finish["agent"]) == ("error", "1", "helper-bot")
    # the textfile directory and the agent label come from the unit's environment and the user name
    from prometheus_client.parser import text_string_to_metric_families

    path = prom / "keystone-agent-task-loop-helper-bot.prom"
    samples = {s.name: s for f in text_string_to_metric_families(path.read_text()) for s in f.samples}
    assert samples["keystone_agent_task_loop_last_exit_code"].value == 1
    assert samples["keystone_agent_task_loop_config_valid"].value == 0
    assert samples["keystone_agent_task_loop_last_exit_code"].labels == {
        "host": samples["keystone_agent_task_loop_last_exit_code"].labels["host"], "agent": "helper-bot",
        "unit": "agent-helper-bot-task-loop"}
    [row] = sqlite3.connect(lh.state / "history.sqlite3").execute(
        "SELECT kind, status, exit_code FROM runs").fetchall()
    assert row == ("task-loop", "error", 1)


def test_a_valid_run_says_config_valid(lh):
    lh.write_tasks(SEVEN)
    assert lh.loop("--max-tasks", "0").returncode == 0
    assert lh.metrics()["keystone_agent_task_loop_config_valid"] == 1
