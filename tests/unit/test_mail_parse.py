"""Mail parsing (headers, HTML to text, reply splitting, automatic mail) and ingest's handling of email items."""

from __future__ import annotations

import pytest

from keystone_agents.loop.ingest import collect, new_tasks, Namer
from keystone_agents.mail.parse import html_to_text, parse_message, split_reply
from keystone_agents.mail.send import build_message, references_for
from keystone_agents.config import parse_config
from keystone_agents.sources import FetchResult


def raw(headers: dict, body: str = "Hello", ctype: str = "text/plain") -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + f"Content-Type: {ctype}; charset=utf-8\r\n\r\n" + body).encode()


BASE = {"From": "Ann Lee <Ann@Example.test>", "To": "agent@example.test, Bob <bob@example.test>",
        "Subject": "Re: =?utf-8?q?caf=C3=A9?= plans", "Date": "Tue, 02 Jan 2024 10:00:00 +0200",
        "Message-ID": "<m2@example.test>", "In-Reply-To": "<m1@example.test>",
        "References": "<m0@example.test> <m1@example.test>"}


def test_headers_are_decoded_and_normalized():
    mail = parse_message(raw(BASE))
    assert (mail.from_addr, mail.from_name) == ("ann@example.test", "Ann Lee")
    assert mail.to == ["agent@example.test", "bob@example.test"]
    assert mail.subject == "Re: café plans"
    assert mail.date == "2024-01-02T08:00:00Z"
    assert mail.message_id == "<m2@example.test>" and mail.in_reply_to == "<m1@example.test>"
    assert mail.references == ["<m0@example.test>", "<m1@example.test>"]
    assert mail.auto_reason is None


def test_html_only_mail_becomes_text():
    html = ("<html><head><style>p{color:red}</style></head><body><p>Hi &amp; welcome</p>"
            "<ul><li>one</li><li>two</li></ul><script>alert(1)</script></body></html>")
    mail = parse_message(raw(BASE, html, "text/html"))
    assert mail.text == "Hi & welcome\n\n- one\n- two"
    assert "color" not in mail.text and "alert" not in mail.text
    assert html_to_text("<blockquote>old</blockquote>") == "> old"


@pytest.mark.parametrize("text, new, quoted_start", [
    ("Yes please.\n\nOn Mon, 1 Jan 2024 at 10:00, Ann <a@b> wrote:\n> Shall I?", "Yes please.", "On Mon"),
    ("Yes.\nOn Mon, 1 Jan 2024 at 10:00, Ann Lee\n<a@b> wrote:\n> Shall I?", "Yes.", "On Mon"),
    ("Done.\n\n-----Original Message-----\nFrom: Ann\nDo it", "Done.", "-----Original"),
    ("Done.\n\nFrom: Ann Lee\nSent: Monday\nDo it", "Done.", "From: Ann"),
    ("Agreed\n\n> earlier\n> text", "Agreed", "> earlier"),
    ("No quote here\nat all", "No quote here\nat all", ""),
])
def test_reply_split(text, new, quoted_start):
    got_new, quoted = split_reply(text)
    assert got_new == new
    assert quoted.startswith(quoted_start)


@pytest.mark.parametrize("extra, reason", [
    ({"Auto-Submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
    ({"Auto-Submitted": "auto-generated; type=x"}, "Auto-Submitted: auto-generated"),
    ({"List-Id": "<dev.example.test>"}, "List-Id (mailing list)"),
    ({"Precedence": "list"}, "Precedence: list"),
    ({"Precedence": "junk"}, "Precedence: junk"),
    ({"From": "GitHub <notifications-noreply@github.com>"}, None),  # not a no-reply local part as such
    ({"From": "no-reply@service.test"}, "no-reply sender"),
    ({"From": "MAILER-DAEMON@mx.test"}, "no-reply sender"),
    ({"Auto-Submitted": "no"}, None),
])
def test_automatic_mail(extra, reason):
    assert parse_message(raw({**BASE, **extra})).auto_reason == reason


def test_email_items_keep_their_source_and_himalaya_json_is_accepted():
    imap_item = {"source": "email", "source_ref": "email-m2@example.test-ann@example.test", "title": "Re: plans",
                 "description": "Email from Ann", "from": "ann@example.test"}
    himalaya = [{"id": "42", "flags": ["Seen"], "subject": "Please call", "from": {"name": "U", "addr": "u@h"},
                 "to": {"name": None, "addr": "agent@h"}, "date": "2024-01-02 10:00+00:00", "has_attachment": False,
                 "body": "Call me.\n\nOn Mon, U <u@h> wrote:\n> old"},
                {"id": "43", "subject": "Your receipt", "from": {"name": None, "addr": "noreply@shop.test"}}]
    items, unusable = collect([FetchResult("builtin-email", None, [imap_item], 0.0),
                               FetchResult("mail", "proj", himalaya, 0.0)])
    assert unusable == 1  # the no-reply envelope
    assert [(i.source, i.source_ref) for i in items] == [("email", "email-m2@example.test-ann@example.test"),
                                                        ("email", "email-42-u@h")]
    tasks, _ = new_tasks(items, set(), Namer([]), "2024-01-02T00:00:00Z")
    assert [t["name"] for t in tasks] == ["re-plans", "please-call"]
    assert tasks[1]["project"] == "proj"
    assert "Call me." in tasks[1]["description"] and "Quoted earlier conversation" in tasks[1]["description"]


def test_reply_headers(tmp_path):
    (tmp_path / "email-messages.json").write_text('{"<m2@x>": {"references": ["<m0@x>", "<m1@x>"]}}')
    assert references_for(tmp_path, "<m2@x>") == ["<m0@x>", "<m1@x>", "<m2@x>"]
    assert references_for(tmp_path, "<other@x>") == ["<other@x>"]
    config = parse_config({"agentName": "demo", "fullName": "Demo Agent",
                           "mail": {"address": "demo@example.test", "smtp": {"host": "localhost"}}})
    msg = build_message(config.mail, config.full_name, ["a@b.test"], "Re: x", "pong", "m2@x", tmp_path)
    assert msg["In-Reply-To"] == "<m2@x>"
    assert msg["References"] == "<m0@x> <m1@x> <m2@x>"
    assert msg["From"] == "Demo Agent <demo@example.test>"
    assert msg["Message-ID"].endswith("@example.test>")
