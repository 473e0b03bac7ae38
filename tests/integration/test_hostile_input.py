"""Untrusted text never becomes a command, an option, or a broken queue (issue 22).

A corpus of hostile payloads — `$(…)`, backticks, `; cmd`, `| cmd`, `&& cmd`, newlines, leading dashes
(`--output=/path`, `-rf`, `--help`), path traversal, absolute paths, NUL and other control characters, very long
strings, a lone surrogate — is put in every field that flows in from outside: command-source items (also in
himalaya's email shape), TASKS.yaml, PROJECTS.yaml and SCHEDULES.yaml entries, calendar events on a real Radicale
server, and emails through a real postfix + dovecot. The real loop, scheduler and email source run it; the
stand-in model CLIs **execute every command line the prompt shows them** in a real shell (FAKE_RUN_COMMANDS), as
a model following instructions would. After every run:

* no marker file exists, and nothing outside the agent's home changed (the file system is compared before and
  after: every payload that writes, writes into tmp_path/outside);
* every provider argv was parsed by the stand-in (which parses like the real CLI) into exactly the options the
  runtime meant: no rejected argv, the model is the task's, the prompt is the prompt;
* every command line a prompt showed reads back with shlex.split as `keystone-agent mail reply --task NAME`;
* no run ended with a traceback (stderr, run events, commands the stand-ins ran);
* TASKS.yaml loads with PyYAML and its invalid entries are exactly the hostile hand-written ones.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import smtplib
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAKEBIN
from tests.support.loop import events, make_home
from keystone_agents import sanitize
from keystone_agents.taskfile import TaskFile

pytestmark = pytest.mark.slow

sys.path.insert(0, str(FAKEBIN))
import _fake  # noqa: E402  - the stand-ins' own reading of command lines in a prompt

STDOUT_KEYS = ("stdout", "stderr")


def corpus(outside: Path) -> dict[str, str]:
    """The payloads; every one that writes anything writes into `outside`."""
    return {
        "dollar": f"$(touch {outside}/dollar)",
        "backtick": f"`touch {outside}/backtick`",
        "semicolon": f"x; touch {outside}/semicolon",
        "pipe": f"x | touch {outside}/pipe",
        "and": f"x && touch {outside}/and",
        "newline": f"x\ntouch {outside}/newline\nkeep going",
        "quote": f"it's \"quoted\" '; touch {outside}/quote; '",
        "option-output": f"--output={outside}/option-output",
        "option-rf": "-rf",
        "option-help": "--help",
        "traversal": "../../outside/traversal",
        "absolute": f"{outside}/absolute",
        "nul": "nul\x00byte",
        "controls": "del\x7f c1\x85\x9b esc\x1b[31m bell\x07 bom\ufeff nonchar\uffff",
        "long": "long text " * 25_000,  # 250 KB: over the kernel's 128 KiB per-argument limit
    }


# ---------------------------------------------------------------- what is checked after every run


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """Every file under `root` outside the `skip` trees: path → (size, mtime_ns)."""
    found = {}
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skip):
            continue
        if path.is_file() or path.is_symlink():
            st = path.lstat()
            found[str(path)] = (st.st_size, st.st_mtime_ns)
    return found


class Watch:
    """The file system outside the agent home, and the marker directory."""

    def __init__(self, root: Path, home: Path, allowed: tuple[Path, ...]):
        self.root, self.home, self.allowed = root, home, allowed
        self.outside = root / "outside"
        self.outside.mkdir(exist_ok=True)
        self.before = snapshot(root, (home, *allowed))

    def check(self) -> None:
        assert list(self.outside.iterdir()) == [], "a payload ran: marker files exist"
        after = snapshot(self.root, (self.home, *self.allowed))
        assert after == self.before, f"files outside the agent home changed: {set(after) ^ set(self.before)}"
        for path in ("/tmp/ks-traversal", "/outside"):
            assert not os.path.exists(path)


def fake_sessions(lh) -> Path:
    """Where the stand-in CLIs keep their sessions (next to their call log; test bookkeeping, like the log)."""
    return Path(f"{lh.fake_log}.sessions")


def fake_rows(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


EXPECTED = {  # how each stand-in must have read the options the runtime gives it
    "claude": {"print_mode": True, "output_format": "json", "dangerously_skip_permissions": True},
    "codex": {"command": "exec", "json": True, "full_auto": True},
    "gemini": {"yolo": True, "output_format": "json"},
}
PROMPT_STARTS = ("Execute this task.", "/deepwork ", "You triage incoming items")


def check_provider_calls(rows: list[dict], models: dict[str, str | None], names: set[str]) -> int:
    """No argv rejected; every option read as the runtime meant; every command line in a prompt is
    `keystone-agent mail reply --task NAME` with NAME a task. Returns how many command lines were checked."""
    assert not [r for r in rows if r.get("event") == "rejected"], "a stand-in could not parse the argv it got"
    checked = 0
    for row in rows:
        if row.get("event") or row["tool"] not in EXPECTED:
            continue
        parsed = row["parsed"]
        for key, value in EXPECTED[row["tool"]].items():
            assert parsed[key] == value, (row["tool"], key, parsed[key])
        if row["task"] in models and models[row["task"]]:
            assert parsed["model"] == models[row["task"]]
        if parsed.get("model"):
            assert sanitize.MODEL_RE.match(parsed["model"]), parsed["model"]
        prompt = parsed["prompt"]
        assert prompt.startswith(PROMPT_STARTS) or "(The task is the text above" in prompt, prompt[:200]
        assert "\x00" not in prompt
        for line in _fake.command_lines(prompt):
            argv = shlex.split(line)
            assert argv[:4] == ["keystone-agent", "mail", "reply", "--task"] and len(argv) == 5, line
            assert argv[4] in names and sanitize.NAME_RE.match(argv[4])
            checked += 1
    for row in rows:
        if row.get("event") == "ran-command":
            assert "Traceback" not in row["stderr"], row["stderr"]
            assert shlex.split(row["line"])[:4] == ["keystone-agent", "mail", "reply", "--task"]
    return checked


def check_queue(tasks_file: Path, expected_problems: int) -> list[dict]:
    """TASKS.yaml loads (PyYAML and the loop's own reader); its invalid entries are the expected ones."""
    data = yaml.safe_load(tasks_file.read_text(encoding="utf-8"))
    tf = TaskFile.load(tasks_file)
    invalid = [e for e in tf.entries if not e.valid]
    assert len(invalid) == expected_problems, [str(p) for p in tf.problems][:5]
    return data["tasks"]


def check_no_traceback(*outputs: str) -> None:
    for text in outputs:
        assert "Traceback" not in text
        for event in events(text):
            assert not event.get("traceback"), event


def yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar: any payload, NUL included


# ---------------------------------------------------------------- the loop: command sources and queue files


def test_hostile_items_tasks_and_projects_through_the_real_loop(tmp_path):
    lh = make_home(tmp_path)
    outside = tmp_path / "outside"
    payloads = corpus(outside)
    items = []
    for key, text in payloads.items():
        items.append({"title": text, "description": text, "source": text, "source_ref": f"{key}-{text}"[:3000],
                      "url": text})
        items.append({"id": text, "name": text, "body": text})
        # himalaya's envelope shape (the seed's fetch-email-source): becomes an email task with a reply hint
        items.append({"id": f"{key}-{text[:200]}", "subject": text, "from": {"name": text, "addr": f"{key}@example.test"},
                      "body": text, "message_id": f"<{key}.{text[:100]}@example.test>"})
        items.append(text)  # free text
        # a sender address that is itself a command substitution: no space, comma or angle bracket, nothing that
        # lowercasing changes (IFS is spelled $'\\x49\\x46\\x53') — a valid address that runs `touch` in a shell
        items.append({"id": f"addr-{key}", "subject": f"from {key}", "body": "hello",
                      "from": {"name": "", "addr": f"x$(a=$'\\x49\\x46\\x53';touch${{!a}}{outside}/addr-{key})@example.test"}})
    items_file = tmp_path / "items.json"
    items_file.write_text(json.dumps(items) [:-1] + ', {"title": "lone \\ud800 surrogate", "body": "x"}]')
    lh.write_projects(f"""
        projects:
          - name: Main
            slug: main
            description: The main project
            status: active
            priority: 1
            updated: 2025-01-01
            sources:
              - name: hostile
                command: [cat, {yaml_str(str(items_file))}]
          - name: Code
            slug: code
            description: Where the hostile repositories are
            status: active
            priority: 3
            updated: 2025-01-01
            repos: [{", ".join(yaml_str(p) for k, p in payloads.items() if k != "long")}]
          - name: {yaml_str(payloads["dollar"])}
            slug: {yaml_str(payloads["option-rf"])}
            description: {yaml_str(payloads["semicolon"])}
            status: active
            priority: 2
            updated: 2025-01-01
    """)
    # hand-written tasks: hostile descriptions (valid entries, executed by each provider) and hostile
    # name/project/model/provider/workflow/needs (invalid entries: isolated, never executed)
    lines = ["tasks:"]
    models: dict[str, str | None] = {}
    providers = ("claude", "codex", "gemini")
    for number, (key, text) in enumerate(payloads.items()):
        name = f"hand-{key}"
        provider = providers[number % 3]
        models[name] = {"claude": "sonnet", "codex": "gpt-5-codex", "gemini": "gemini-2.5-pro"}[provider]
        lines += [f"  - name: {name}", f"    description: {yaml_str(text)}", "    status: pending",
                  f"    provider: {provider}", f"    model: {models[name]}"]
    for provider in providers:  # a 250 KB prompt, with every provider: it travels on stdin
        lines += [f"  - name: long-{provider}", f"    description: {yaml_str(payloads['long'])}",
                  "    status: pending", f"    provider: {provider}"]
    invalid = 0
    for key, text in payloads.items():
        for field in ("name", "project", "model", "fallback_model", "provider", "workflow", "profile"):
            entry = {"name": f"bad-{field}-{key}", "description": "hostile field", "status": "pending", field: text}
            lines.append("  - " + ", ".join(f"{k}: {yaml_str(v)}" for k, v in entry.items()).join("{}"))
            invalid += 1
        lines.append("  - {name: " + f"bad-needs-{key}" + ", description: x, status: pending, needs: ["
                     + yaml_str(text) + "]}")
        invalid += 1
    lh.tasks.write_text("\n".join(lines) + "\n")
    lh.config(maxTasks=200, taskTimeoutSeconds=120,
              coding={"workflows": ["sweng/sweng"], "forge": "github",
                      "cloneUrl": str(tmp_path / "remotes" / "{owner}" / "{repo}.git")},
              environment={"FAKE_RUN_COMMANDS": "1"})
    # a code task of project code: its repository comes from PROJECTS.yaml's hostile repos
    with open(lh.tasks, "a") as handle:
        handle.write("  - {name: code-it, description: Fix it, status: pending, project: code, workflow: sweng/sweng}\n")

    watch = Watch(tmp_path, lh.home, (lh.fake_log, lh.prom_dir, items_file, fake_sessions(lh)))
    result = lh.loop(timeout=900)
    assert result.returncode in (0, 3), result.stderr[-3000:]
    watch.check()
    check_no_traceback(result.stderr, *(p.read_text() for p in (lh.home / ".local/state/agent-task-loop/logs").glob("*.log")))
    tasks = check_queue(lh.tasks, invalid)
    names = {t["name"] for t in tasks if isinstance(t.get("name"), str)}
    # the lone surrogate is refused with a reason, the rest became tasks
    assert any("lone surrogate" in e.get("msg", "") for e in events(result.stderr, "log"))
    ingested = [t for t in tasks if t.get("created_at") and t.get("source") not in (None, "manual")
                and not str(t.get("name", "")).startswith(("hand-", "bad-", "code-it"))]
    assert len(ingested) >= 3 * len(payloads)
    for task in ingested:
        assert sanitize.NAME_RE.match(task["name"]) and len(task["name"]) <= sanitize.NAME_MAX
        assert len(task["description"].encode()) <= sanitize.DESCRIPTION_MAX
        assert not any(ord(c) < 32 and c not in "\n\t" for c in task["description"])
        assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in task["source"] + task["source_ref"])
    long_ones = [t for t in ingested if "full text" in t["description"]]
    assert long_ones, "a 250 KB item keeps its text in a file"
    for task in long_ones:
        path = Path(task["description"].split("The full text (")[1].split(" is in ")[1].split(";")[0])
        assert lh.home in path.parents and path.stat().st_size > 200_000
    rows = fake_rows(lh.fake_log)
    checked = check_provider_calls(rows, models, names)
    email_tasks = [t for t in ingested if t["source"] == "email"]
    assert len(email_tasks) == 2 * len(payloads) and checked >= 2 * len(payloads)
    ran = [r for r in rows if r.get("event") == "ran-command"]
    assert len(ran) >= len(email_tasks)  # each email task's hint was followed, in a real shell
    assert all("no mail account configured" in r["stderr"] for r in ran)  # and reached the command itself
    # every hand-written task ran with its hostile description as the prompt (the 250 KB one on stdin)
    by_task = {r["task"]: r for r in rows if not r.get("event")}
    status = {t["name"]: t["status"] for t in tasks if isinstance(t.get("name"), str)}
    for key, text in payloads.items():
        call = by_task[f"hand-{key}"]
        assert sanitize.clean_text(text, field="d", multiline=True, limit=1 << 62) in call["parsed"]["prompt"]
    for provider in providers:
        parsed = by_task[f"long-{provider}"]["parsed"]
        assert parsed.get("prompt_from") == "stdin" or parsed.get("stdin_bytes", 0) > 200_000
        assert payloads["long"].strip() in parsed["prompt"]
        assert max(len(a) for a in by_task[f"long-{provider}"]["argv"]) < sanitize.PROMPT_ARGUMENT_MAX
        assert status[f"long-{provider}"] == "completed"
    assert not any(n.startswith("bad-") for n in by_task)
    assert all(status[f"hand-{key}"] == "completed" for key in payloads)
    assert status["code-it"] in ("pending", "blocked")  # the clone failed; nothing escaped ~/.repos
    assert not (lh.home / ".repos").exists() or all(lh.home / ".repos" in p.parents
                                                     for p in (lh.home / ".repos").rglob("*"))


# ---------------------------------------------------------------- every CLI reads an attached value as the value


@pytest.mark.parametrize("tool", ["claude", "codex", "gemini"])
@pytest.mark.parametrize("model", ["--output=/tmp/ks-evil", "-rf", "--help", "-m", "-", "--json"])
def test_attached_values_are_read_as_values_by_each_cli(tool, model, tmp_path):
    """Even a model the schema refuses (so it can only come from a bug) is one value to each CLI's parser:
    the runtime's argv, given to the stand-in (which parses like the real CLI), reads back the same model."""
    import subprocess

    from keystone_agents.profiles import Runtime
    from keystone_agents.providers import get

    class Config:
        max_turns = 3

    for prompt in ("-rf --help", "x" * 200_000):
        inv = get(tool, Config()).invocation(prompt, Runtime(provider=tool, model=model, profile=None,
                                                              fallback_model=None, effort=None))
        log = tmp_path / f"{tool}.jsonl"
        env = {**os.environ, "FAKE_BIN_LOG": str(log)}
        proc = subprocess.run([str(FAKEBIN / inv.argv[0]), *inv.argv[1:]], input=inv.stdin or "", env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        [row] = [r for r in fake_rows(log) if not r.get("event")][-1:]
        assert row["parsed"]["model"] == model
        assert prompt in row["parsed"]["prompt"]
        assert max(len(a.encode()) for a in inv.argv) <= sanitize.PROMPT_ARGUMENT_MAX
        log.unlink()


# ---------------------------------------------------------------- the scheduler: SCHEDULES.yaml and a real CalDAV server

CAL_USER, CAL_PASSWORD = "agent", "cal-Passw0rd"
NOW = dt.datetime(2025, 6, 2, 5, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def hostile_calendar(tmp_path_factory):
    """Radicale with one calendar whose events carry the corpus in UID, SUMMARY and DESCRIPTION."""
    import caldav
    import icalendar

    from tests.support.radicale import Unavailable, start

    root = tmp_path_factory.mktemp("radicale-hostile")
    outside = root / "outside"  # the markers of this fixture's payloads (checked by the test too)
    try:
        base, stop = start(root, CAL_USER, CAL_PASSWORD)
    except Unavailable as exc:
        pytest.skip(str(exc))
    stored, refused = [], []
    try:
        with caldav.DAVClient(url=base, username=CAL_USER, password=CAL_PASSWORD) as client:
            calendar = client.principal().make_calendar(name="Hostile", cal_id="hostile")
            for number, (key, text) in enumerate(corpus(outside).items()):
                event = icalendar.Event()
                event.add("uid", f"{key}-{text[:300]}" if key != "long" else f"long-{number}")
                event.add("summary", text)
                event.add("description", text)
                event.add("dtstart", NOW + dt.timedelta(hours=2, minutes=number))
                event.add("dtend", NOW + dt.timedelta(hours=3))
                event.add("dtstamp", NOW)
                cal = icalendar.Calendar()
                cal.add("prodid", "-//keystone-agents tests//EN")
                cal.add("version", "2.0")
                cal.add_component(event)
                try:
                    calendar.save_event(cal.to_ical().decode())
                    stored.append(key)
                except Exception as exc:  # noqa: BLE001 - a server may refuse a payload: that is not our bug
                    refused.append((key, type(exc).__name__))
        password = root / "password"
        password.write_text(CAL_PASSWORD + "\n")
        yield {"url": base + "hostile/", "password_file": str(password), "stored": stored, "refused": refused,
               "outside": outside}
    finally:
        stop()


def test_hostile_schedules_and_calendar_events_through_scheduler_and_loop(tmp_path, hostile_calendar, monkeypatch):
    import subprocess

    from tests.conftest import installed_script

    monkeypatch.setenv("TZ", "UTC")
    lh = make_home(tmp_path)
    payloads = corpus(tmp_path / "outside")
    lines = ["schedules:"]
    for key, text in payloads.items():
        lines += [f"  - name: sched-{key}", f"    description: {yaml_str(text)}", "    schedule: daily"]
    invalid = 0
    for key, text in payloads.items():
        for field in ("name", "workflow"):
            entry = {"name": f"bad-{field}-{key}", "description": "x", "schedule": "daily", field: text}
            lines.append("  - " + ", ".join(f"{k}: {yaml_str(v)}" for k, v in entry.items()).join("{}"))
            invalid += 1
    (lh.home / "SCHEDULES.yaml").write_text("\n".join(lines) + "\n")
    lh.write_tasks("tasks: []\n")
    lh.config(maxTasks=200, environment={"FAKE_RUN_COMMANDS": "1"},
              calendar={"url": hostile_calendar["url"], "user": CAL_USER,
                        "passwordFile": hostile_calendar["password_file"], "windowHours": 24})
    watch = Watch(tmp_path, lh.home, (lh.fake_log, lh.prom_dir, fake_sessions(lh)))
    schedule = subprocess.run([installed_script("keystone-agent"), "schedule", "--home", str(lh.home), "--now",
                               NOW.strftime("%Y-%m-%dT%H:%M:%SZ"), "--json"],
                              capture_output=True, text=True, env=lh.env(), timeout=300)
    check_no_traceback(schedule.stderr, schedule.stdout)
    report = json.loads(schedule.stdout)
    assert report["exit_code"] in (0, 1), schedule.stderr[-2000:]  # 1: the invalid schedules were reported
    watch.check()
    tasks = check_queue(lh.tasks, 0)
    by_source = {}
    for task in tasks:
        by_source.setdefault(task["source"], []).append(task)
    assert len(by_source["schedule"]) == len(payloads)  # the invalid schedules were skipped, with a reason
    assert len([e for e in report["errors"] if "SCHEDULES.yaml" in e]) >= invalid
    assert len(by_source.get("calendar", [])) == len(hostile_calendar["stored"]) >= len(payloads) - 2
    for task in tasks:
        assert sanitize.NAME_RE.match(task["name"]) and len(task["name"]) <= sanitize.NAME_MAX
        assert len(task["description"].encode()) <= sanitize.DESCRIPTION_MAX
        assert not any(ord(c) < 32 and c not in "\n\t" for c in task["description"])
        assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in task["source_ref"])
    result = lh.loop(timeout=900)
    assert result.returncode in (0, 3), result.stderr[-3000:]
    watch.check()
    assert list(hostile_calendar["outside"].glob("*")) == []
    check_no_traceback(result.stderr)
    tasks = check_queue(lh.tasks, 0)
    assert {t["status"] for t in tasks} == {"completed"}
    check_provider_calls(fake_rows(lh.fake_log), {}, {t["name"] for t in tasks})


# ---------------------------------------------------------------- email: real postfix + dovecot


def submit_raw(ms, sender: str, raw: bytes) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", ms.smtps_port, context=ms.context(), timeout=30) as smtp:
        smtp.login(ms.address(sender), ms.passwords[ms.address(sender)])
        smtp.sendmail(ms.address(sender), [ms.address("agent")], raw)


def hostile_message(ms, key: str, text: str, number: int) -> tuple[bytes, str]:
    """A raw RFC 5322 message from tester with `text` in the display name, the subject (first line, header-
    encoded) and the body, and a Message-ID holding shell syntax."""
    from email.header import Header

    message_id = f"<{number}.$(touch.x)`id`;{key}@example.test>"
    subject = Header(text.splitlines()[0][:400] if text.strip() else "x", "utf-8").encode()
    name = Header(text.splitlines()[0][:100] if text.strip() else "x", "utf-8").encode()
    body = text.replace("\x00", "\\0")  # SMTP cannot carry a NUL byte; the escaped form stays hostile text
    raw = (f"From: {name} <{ms.address('tester')}>\r\nTo: {ms.address('agent')}\r\nSubject: {subject}\r\n"
           f"Message-ID: {message_id}\r\nDate: Mon, 02 Jun 2025 05:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
    return raw.encode() + body.replace("\n", "\r\n").encode("utf-8") + b"\r\n", message_id


@pytest.fixture
def mailbox(mail_server):
    mail_server.clear("agent")
    mail_server.clear("tester")
    return mail_server


def test_hostile_email_through_the_email_source_and_reply_by_task(tmp_path, mailbox):
    ms = mailbox
    lh = make_home(tmp_path)
    payloads = corpus(tmp_path / "outside")
    sent = {}
    for number, (key, text) in enumerate(payloads.items()):
        raw, message_id = hostile_message(ms, key, text, number)
        submit_raw(ms, "tester", raw)
        sent[message_id] = key
    assert ms.wait_count("agent", len(sent), timeout=60) == len(sent)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    lh.write_tasks("tasks: []\n")
    lh.config(maxTasks=200, mail=ms.mail_config("agent", secrets), environment={"FAKE_RUN_COMMANDS": "1"})
    watch = Watch(tmp_path, lh.home, (lh.fake_log, lh.prom_dir, fake_sessions(lh)))
    result = lh.loop(timeout=900)
    assert result.returncode in (0, 3), result.stderr[-3000:]
    watch.check()
    check_no_traceback(result.stderr)
    tasks = check_queue(lh.tasks, 0)
    email_tasks = [t for t in tasks if t["source"] == "email"]
    assert len(email_tasks) == len(sent)
    rows = fake_rows(lh.fake_log)
    checked = check_provider_calls(rows, {}, {t["name"] for t in tasks})
    assert checked == len(sent)
    ran = [r for r in rows if r.get("event") == "ran-command"]
    assert len(ran) == len(sent) and all(r["exit_code"] == 0 for r in ran), [r["stderr"] for r in ran]
    # every reply reached the sender, threaded under the hostile Message-ID, subject "Re: <clean subject>"
    assert ms.wait_count("tester", len(sent), timeout=60) == len(sent)
    import email
    import email.policy

    replies = [email.message_from_bytes(raw, policy=email.policy.default) for raw in ms.messages("tester")]
    assert sorted(str(r["In-Reply-To"]) for r in replies) == sorted(sent)
    for reply in replies:
        assert str(reply["Subject"]).startswith("Re: ")
        assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in str(reply["Subject"]))
        assert reply["References"].split()[-1] == reply["In-Reply-To"]
    assert {t["status"] for t in email_tasks} == {"completed"}
