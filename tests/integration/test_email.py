"""The email source and `keystone-agent mail send` against a real dovecot + postfix on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keystone_agents.config import parse_config
from keystone_agents.sources import SourceFailed
from keystone_agents.sources.email_imap import ImapSource

pytestmark = pytest.mark.slow


class Recorder:
    def __init__(self):
        self.events = []

    def info(self, event, **fields):
        self.events.append({"event": event, **fields})

    warning = error = info


@pytest.fixture
def mailbox(mail_server):
    """The agent's INBOX, empty at the start of the test."""
    mail_server.clear("agent")
    mail_server.clear("tester")
    return mail_server


def source_for(ms, tmp_path: Path, **mail) -> tuple[ImapSource, Recorder]:
    config = parse_config({"agentName": "demo", "mail": ms.mail_config("agent", tmp_path, **mail)})
    log = Recorder()
    return ImapSource(config.mail, tmp_path / "state", log=log), log


def subjects(result) -> list[str]:
    return [item["subject"] for item in result.data]


def test_messages_become_email_items_with_parsed_fields(mailbox, tmp_path):
    ms = mailbox
    first = ms.send("tester", ms.address("agent"), "Please review the budget", "Numbers attached.\n\n-- \nTester")
    second = ms.send("human", ms.address("agent"), "Re: plan", html=(
        "<html><body><p>Go ahead with <b>option B</b>.</p>"
        "<div>On Mon, 1 Jan 2024, Agent &lt;agent@example.test&gt; wrote:</div>"
        "<blockquote>Option A or option B?</blockquote></body></html>"),
        body="Go ahead with option B.\n\nOn Mon, 1 Jan 2024, Agent <agent@example.test> wrote:\n> Option A or option B?\n")
    ms.wait_count("agent", 2)
    source, _ = source_for(ms, tmp_path)
    result = source.fetch()
    by_subject = {item["subject"]: item for item in result.data}
    assert set(by_subject) == {"Please review the budget", "Re: plan"}
    budget = by_subject["Please review the budget"]
    assert budget["source"] == "email"
    assert budget["source_ref"] == f"email-{first.strip('<>')}-tester@example.test"
    assert budget["from"] == "tester@example.test"
    assert budget["to"] == ["agent@example.test"]
    assert budget["message_id"] == first
    assert budget["date"].endswith("Z")
    assert "Numbers attached." in budget["body"]
    assert budget["title"] == "Please review the budget"
    assert f"Message-ID: {first}" in budget["description"]
    assert "mail send" not in budget["description"]  # the reply hint (added by ingest) names only the task
    plan = by_subject["Re: plan"]
    assert plan["new_text"] == "Go ahead with option B."
    assert "Option A or option B?" in plan["quoted"]
    assert plan["message_id"] == second
    assert "Quoted earlier conversation" in plan["description"]


def test_seen_flags_hide_nothing_and_each_message_is_delivered_once(mailbox, tmp_path):
    ms = mailbox
    ms.send("tester", ms.address("agent"), "one")
    ms.wait_count("agent", 1)
    ms.set_seen("agent")  # a human read it in their mail client before the agent looked
    source, _ = source_for(ms, tmp_path)
    result = source.fetch()
    assert subjects(result) == ["one"]
    again = source.fetch()  # not committed (the loop did not save the tasks): delivered again
    assert subjects(again) == ["one"]
    again.commit()
    assert subjects(source.fetch()) == []
    ms.send("tester", ms.address("agent"), "two")
    ms.wait_count("agent", 2)
    result = source.fetch()
    assert subjects(result) == ["two"]
    result.commit()
    assert subjects(source.fetch()) == []
    # the agent read nothing: "two" (which no human opened) is still unseen
    client = ms.imap("agent")
    client.select("INBOX", readonly=True)
    _, data = client.uid("SEARCH", None, "UNSEEN")
    client.logout()
    assert len(data[0].split()) == 1
    state = json.loads((tmp_path / "state/email-imap.json").read_text())
    assert state["folders"]["INBOX"]["last_uid"] >= 2


def test_uidvalidity_change_rereads_the_folder_with_the_same_refs(mailbox, tmp_path):
    ms = mailbox
    ms.send("tester", ms.address("agent"), "alpha")
    ms.send("tester", ms.address("agent"), "beta")
    ms.wait_count("agent", 2)
    source, log = source_for(ms, tmp_path)
    first = source.fetch()
    first.commit()
    refs = sorted(item["source_ref"] for item in first.data)
    validity = json.loads((tmp_path / "state/email-imap.json").read_text())["folders"]["INBOX"]["uidvalidity"]
    ms.recreate_folder("agent")
    reread = source.fetch()
    assert sorted(item["source_ref"] for item in reread.data) == refs  # ingest's dedup keeps them single
    assert {item["uidvalidity"] for item in reread.data} != {validity}
    assert any("UIDVALIDITY changed" in e["msg"] for e in log.events)


def test_automatic_mail_is_skipped_with_a_recorded_reason(mailbox, tmp_path):
    ms = mailbox
    to = ms.address("agent")
    ms.send("tester", to, "Out of office", headers={"Auto-Submitted": "auto-replied"})
    ms.send("tester", to, "[dev] weekly digest", headers={"List-Id": "Dev list <dev.lists.example.test>"})
    ms.send("tester", to, "Sale!", headers={"Precedence": "bulk"})
    ms.send("tester", to, "Your build passed", from_header="GitHub <noreply@github.com>")
    ms.send("tester", to, "A real question", headers={"Auto-Submitted": "no"})
    ms.wait_count("agent", 5)
    source, log = source_for(ms, tmp_path)
    result = source.fetch()
    assert subjects(result) == ["A real question"]
    reasons = {e["reason"] for e in log.events if e.get("reason")}
    assert reasons == {"Auto-Submitted: auto-replied", "List-Id (mailing list)", "Precedence: bulk",
                       "no-reply sender"}
    result.commit()
    recorded = [json.loads(line) for line in (tmp_path / "state/email-skipped.jsonl").read_text().splitlines()]
    assert {(r["subject"], r["reason"]) for r in recorded} == {
        ("Out of office", "Auto-Submitted: auto-replied"), ("[dev] weekly digest", "List-Id (mailing list)"),
        ("Sale!", "Precedence: bulk"), ("Your build passed", "no-reply sender")}
    assert subjects(source.fetch()) == []


def test_starttls_and_a_wrong_password(mailbox, tmp_path):
    ms = mailbox
    ms.send("tester", ms.address("agent"), "over starttls")
    ms.wait_count("agent", 1)
    source, _ = source_for(ms, tmp_path, imap_security="starttls")
    assert subjects(source.fetch()) == ["over starttls"]
    (tmp_path / "agent.password").write_text("wrong-password\n")
    with pytest.raises(SourceFailed) as failed:
        source.fetch()
    assert "IMAP login failed for agent@example.test" in failed.value.reason
    assert "wrong-password" not in failed.value.reason


def test_a_server_without_our_ca_is_refused(mailbox, tmp_path):
    config = parse_config({"agentName": "demo", "mail": {**mailbox.mail_config("agent", tmp_path), "caFile": None}})
    with pytest.raises(SourceFailed, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        ImapSource(config.mail, tmp_path / "state").fetch()


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_mail_send_replies_in_thread(mailbox, tmp_path, agent_subprocess, security):
    ms = mailbox
    parent = ms.send("tester", ms.address("agent"), "Question", headers={"References": "<root@example.test>"})
    ms.wait_count("agent", 1)
    home = tmp_path / "home"
    (home / ".config/keystone-agent").mkdir(parents=True)
    (home / ".config/keystone-agent/config.json").write_text(json.dumps({
        "agentName": "demo", "fullName": "Demo Agent",
        "mail": ms.mail_config("agent", tmp_path, smtp_security=security)}))
    source = ImapSource(parse_config(json.loads((home / ".config/keystone-agent/config.json").read_text())).mail,
                        home / ".local/state/agent-task-loop/state")
    source.fetch().commit()  # the email source saw the parent: its References are known
    result = agent_subprocess("mail", "send", "--home", str(home), "--to", ms.address("tester"),
                              "--subject", "Re: Question", "--in-reply-to", parent, "--json",
                              input="The answer is 42.\n")
    assert result.returncode == 0, result.stderr
    sent = json.loads(result.stdout)
    reply = ms.wait_for("tester", lambda m: m["Subject"] == "Re: Question")
    assert reply is not None
    assert reply["In-Reply-To"] == parent
    assert reply["References"].split() == ["<root@example.test>", parent]
    assert reply["From"] == "Demo Agent <agent@example.test>"
    assert reply["Message-ID"] == sent["Message-ID"]
    assert reply.get_body(("plain",)).get_content().strip() == "The answer is 42."


def test_mail_send_errors(mailbox, tmp_path, agent_subprocess):
    home = tmp_path / "home"
    (home / ".config/keystone-agent").mkdir(parents=True)
    config = home / ".config/keystone-agent/config.json"
    config.write_text(json.dumps({"agentName": "demo"}))
    result = agent_subprocess("mail", "send", "--home", str(home), "--to", "a@b.test", "--subject", "x", input="hi")
    assert result.returncode == 1 and "no mail account configured" in result.stderr
    mail = mailbox.mail_config("agent", tmp_path)
    config.write_text(json.dumps({"agentName": "demo", "mail": mail}))
    result = agent_subprocess("mail", "send", "--home", str(home), "--to", "a@b.test", "--subject", "x", input="  \n")
    assert result.returncode == 1 and "body (stdin) is empty" in result.stderr
    result = agent_subprocess("mail", "send", "--home", str(home), "--to", "not-an-address", "--subject", "x",
                              input="hi")
    assert result.returncode == 1 and "not an email address" in result.stderr
    Path(mail["passwordFile"]).write_text("bad-secret\n")
    result = agent_subprocess("mail", "send", "--home", str(home), "--to", mailbox.address("tester"),
                              "--subject", "x", input="hi")
    assert result.returncode == 1 and "SMTP login failed for agent@example.test" in result.stderr
    assert "bad-secret" not in result.stderr
