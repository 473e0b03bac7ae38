"""keystone-agent watch: the event table a real loop run writes, read back as NDJSON; the cursor under 1,000
events from 4 concurrent writer processes; the journal merge; parity with the logfmt lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import installed_script
from tests.support.loop import events, make_home


@pytest.fixture
def lh(tmp_path, clean_env):
    lh = make_home(tmp_path)
    lh.write_tasks("""
        tasks:
          - name: first
            description: "One"
            status: pending
          - name: second
            description: "Two [fake:report=blocked]"
            status: pending
    """)
    return lh


def watch(lh, *args, timeout=60) -> list[dict]:
    result = subprocess.run([installed_script("keystone-agent"), "watch", "--home", str(lh.home), *args],
                            capture_output=True, text=True, env=lh.env(), timeout=timeout)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_run_reads_back_in_order_with_the_logfmt_fields(lh):
    run = lh.loop()
    assert run.returncode == 0, run.stderr
    lines = watch(lh)
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(line["v"] == 1 and line["agent"] == "demo" and line["ts"].endswith("Z") for line in lines)
    names = [line["event"] for line in lines]
    assert names[0] == "run_start" and names[-1] == "run_finish"
    assert names.index("stage_start") < names.index("task_start") < names.index("task_finish")
    finishes = [line for line in lines if line["event"] == "task_finish"]
    assert [(f["task_name"], f["status"], f["outcome"]) for f in finishes] == [
        ("first", "completed", "completed"), ("second", "blocked", "blocked")]
    # parity: every logfmt line of the run log (which keeps every event, whatever the stream's verbosity) has
    # its twin, same name, same fields
    [run_log] = sorted((lh.home / ".local/state/agent-task-loop/logs").glob("*.log"))
    logfmt = events(run_log.read_text())
    assert [e["event"] for e in logfmt] == names
    for text, row in zip(logfmt, lines):
        for key, value in text.items():
            if key in ("ts",):
                continue
            got = row.get(key)
            assert got is not None, (key, row)
            rendered = json.dumps(got, separators=(",", ":")) if isinstance(got, (list, dict)) else (
                ("true" if got else "false") if isinstance(got, bool) else str(got))
            # logfmt rounds floats to 3 decimals; the table keeps them whole
            assert rendered == value or (isinstance(got, float) and float(value) == pytest.approx(got, abs=1e-3)), key
    # filters and cursors
    assert [x["event"] for x in watch(lh, "--types", "task_start,task_finish")] == [
        "task_start", "task_finish", "task_start", "task_finish"]
    middle = ids[len(ids) // 2]
    assert [x["id"] for x in watch(lh, "--since", str(middle))] == [i for i in ids if i > middle]
    at = lines[3]["ts"]
    assert [x["id"] for x in watch(lh, "--since", at)][0] <= lines[3]["id"]
    assert [x["id"] for x in watch(lh, "--limit", "2")] == ids[:2]


def test_bad_since_is_a_usage_error(lh):
    result = subprocess.run([installed_script("keystone-agent"), "watch", "--home", str(lh.home), "--since",
                             "yesterday"], capture_output=True, text=True, env=lh.env())
    assert result.returncode == 2 and "--since" in result.stderr and "Traceback" not in result.stderr


WRITER = """
import sys
from pathlib import Path
from keystone_agents.events import event_logger
db, writer, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
log = event_logger(agent="demo", unit="load", run_id="load-" + writer, event_db=db, stream=open("/dev/null", "w"))
for n in range(count):
    log.info("load", msg="x", writer=writer, n=n)
"""


def test_follow_sees_1000_events_from_4_concurrent_writers_without_gap_or_duplicate(lh):
    db = lh.state / "history.sqlite3"
    lh.state.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", "from keystone_agents import history; from pathlib import Path; "
                    f"history.connect(Path({str(db)!r})).close()"], check=True)
    reader = subprocess.Popen([installed_script("keystone-agent"), "watch", "--home", str(lh.home), "--follow",
                               "--since", "0", "--types", "load", "--limit", "1000", "--interval", "0.02"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=lh.env())
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(w), "250"]) for w in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1000
    ids = [line["id"] for line in lines]
    assert ids == list(range(ids[0], ids[0] + 1000))  # consecutive: nothing skipped, nothing twice
    for w in range(4):  # each writer's events in the order it wrote them
        assert [line["n"] for line in lines if line["writer"] == str(w)] == list(range(250))


def test_follow_without_since_shows_only_new_events_and_journal_merges(lh, tmp_path):
    assert lh.loop().returncode == 0
    bindir = tmp_path / "bin"
    bindir.mkdir()
    entry = {"__REALTIME_TIMESTAMP": "1764500000000000", "_SYSTEMD_USER_UNIT": "agent-demo-task-loop.service",
             "MESSAGE": "provider stderr line", "__CURSOR": "s=abc;i=1"}
    (bindir / "journalctl").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/journalctl.args\n"
                                       f"echo '{json.dumps(entry)}'\n")
    (bindir / "journalctl").chmod(0o755)
    env = lh.env(PATH=f"{bindir}{os.pathsep}{lh.env()['PATH']}")
    proc = subprocess.Popen([installed_script("keystone-agent"), "watch", "--home", str(lh.home), "--follow",
                             "--journal", "--interval", "0.05"], stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    lh.write_tasks("""
        tasks:
          - name: third
            description: "Three"
            status: pending
    """)
    assert lh.loop().returncode == 0
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        seen.append(json.loads(proc.stdout.readline()))
        if seen[-1].get("event") == "run_finish":
            break
    proc.terminate()
    proc.wait(timeout=10)
    journal = [s for s in seen if s.get("source") == "journal"]
    assert journal == [{"v": 1, "source": "journal", "ts": "2025-11-30T10:53:20.000Z", "agent": "demo",
                        "unit": "agent-demo-task-loop.service", "message": "provider stderr line",
                        "cursor": "s=abc;i=1"}]
    assert (tmp_path / "journalctl.args").read_text().split() == [
        "--user", "-u", "agent-demo-*", "-o", "json", "--no-pager", "--follow"]
    table = [s for s in seen if "id" in s]
    assert table[0]["event"] == "run_start"  # the first run's events were not replayed
    assert [s["task_name"] for s in table if s["event"] == "task_start"] == ["third"]


def test_events_older_than_keep_event_days_are_pruned(lh):
    import sqlite3

    lh.config(keepEventDays=7)
    assert lh.loop().returncode == 0
    conn = sqlite3.connect(lh.state / "history.sqlite3")
    conn.execute("INSERT INTO events (at, type, data) VALUES ('2020-01-01T00:00:00.000Z', 'ancient', '{}')")
    conn.commit()
    (lh.state / "events-pruned").unlink()
    assert lh.loop().returncode == 0
    types = [row[0] for row in conn.execute("SELECT type FROM events")]
    conn.close()
    assert "ancient" not in types and "run_start" in types
