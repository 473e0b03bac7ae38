"""The canonical acceptance test, end to end with real servers: a mail `[ping] <tag>` arrives for the agent
(postfix → dovecot); one `keystone-agent loop` (a real subprocess) ingests it over IMAP and executes it with a
`command` provider that replies through `keystone-agent mail send` (SMTP); the sender finds `Re: [pong] <tag>`
with body `pong` in their mailbox. A second loop creates nothing new and sends nothing."""

from __future__ import annotations

import json
import sys
import uuid

import pytest

from tests.support.loop import events, make_home

pytestmark = pytest.mark.slow

# The test provider: reads the task prompt on stdin, finds the ping's sender, Message-ID and tag in the
# description the email source wrote, and answers with `keystone-agent mail send` (argv, no shell).
PROVIDER = r'''#!{python}
import json, os, re, subprocess, sys
prompt = sys.stdin.read()
with open(os.environ["PONG_LOG"], "a") as log:
    log.write(json.dumps({{"task": os.environ.get("KEYSTONE_TASK_NAME"), "prompt": prompt}}) + "\n")
tag = re.search(r"^Subject: \[ping\] (\S+)", prompt, re.M).group(1)
sender = re.search(r"Email from (?:[^<\n]*<)?([^<>\s]+@[^<>\s]+)", prompt).group(1)
message_id = re.search(r"^Message-ID: (<[^>]+>)", prompt, re.M).group(1)
sent = subprocess.run(["keystone-agent", "mail", "send", "--to", sender, "--subject", f"Re: [pong] {{tag}}",
                       "--in-reply-to", message_id], input="pong\n", text=True, capture_output=True)
sys.stderr.write(sent.stderr)
print(f"replied to {{sender}}: {{sent.stdout.strip()}}")
sys.exit(sent.returncode)
'''


def test_ping_pong(mail_server, tmp_path):
    ms = mail_server
    ms.clear("agent")
    ms.clear("tester")
    lh = make_home(tmp_path)
    provider = tmp_path / "pong-provider"
    provider.write_text(PROVIDER.format(python=sys.executable))
    provider.chmod(0o755)
    pong_log = tmp_path / "pong.jsonl"
    # providers get a clean environment: what the test provider needs goes through the config
    lh.config(defaults={"provider": "command"}, commandProvider={"argv": [str(provider)]},
              fullName="Demo Agent", mail=ms.mail_config("agent", tmp_path),
              environment={"PONG_LOG": str(pong_log)})
    tag = f"e2e-{uuid.uuid4().hex[:8]}"
    ping_id = ms.send("tester", ms.address("agent"), f"[ping] {tag}", "Please answer with pong.")
    assert ms.wait_count("agent", 1) == 1

    dry = lh.loop("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not (lh.state / "email-imap.json").exists()  # a dry run advances nothing
    assert not pong_log.exists()

    first = lh.loop()
    assert first.returncode == 0, first.stderr

    [task] = lh.task_list()
    assert task["source"] == "email"
    assert task["source_ref"] == f"email-{ping_id.strip('<>')}-tester@example.test"
    assert task["status"] == "completed"
    assert task["name"] == f"ping-{tag}"
    reply = ms.wait_for("tester", lambda m: m["Subject"] == f"Re: [pong] {tag}")
    assert reply is not None, "no pong arrived in the sender's mailbox"
    assert reply.get_body(("plain",)).get_content().strip() == "pong"
    assert reply["In-Reply-To"] == ping_id
    assert reply["References"].split() == [ping_id]
    assert reply["From"] == "Demo Agent <agent@example.test>"
    assert len(pong_log.read_text().splitlines()) == 1
    ingested = [e for e in events(first.stderr, "log") if e.get("msg", "").startswith("ingested task")]
    assert [e["source_ref"] for e in ingested] == [task["source_ref"]]

    second = lh.loop()
    assert second.returncode == 0, second.stderr
    assert lh.task_list() == [task]
    finish = events(second.stderr, "run_finish")[-1]
    assert finish["tasks_created"] == "0" and finish["tasks_executed"] == "0"
    assert len(pong_log.read_text().splitlines()) == 1
    assert len(ms.messages("tester")) == 1
    state = json.loads((lh.state / "email-imap.json").read_text())
    assert state["folders"]["INBOX"]["last_uid"] >= 1
