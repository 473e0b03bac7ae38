"""Send one email over SMTP (TLS or STARTTLS) as the agent: From is the configured identity, a reply carries
In-Reply-To and a References chain (the parent's References, when the email source saw the parent, plus the
parent's Message-ID, RFC 5322 §3.6.4)."""

from __future__ import annotations

import email.utils
import json
import smtplib
import socket
import time
import ssl
from email.message import EmailMessage
from pathlib import Path

from keystone_agents.sources.email_imap import MESSAGES_FILE, read_secret, tls_context

DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}
TIMEOUT = 60


class MailError(Exception):
    """The mail could not be sent; the message says why (never with the password)."""


def normalize_message_id(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    return value if value.startswith("<") and value.endswith(">") else f"<{value.strip('<>')}>"


def references_for(state_dir: Path | None, in_reply_to: str) -> list[str]:
    """The parent's References (as the email source recorded them) followed by the parent itself."""
    chain: list[str] = []
    if state_dir is not None:
        try:
            known = json.loads((state_dir / MESSAGES_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        parent = known.get(in_reply_to) if isinstance(known, dict) else None
        if isinstance(parent, dict):
            chain = [r for r in parent.get("references") or [] if isinstance(r, str)]
    return [r for r in chain if r != in_reply_to] + [in_reply_to]


def build_message(settings, full_name: str | None, to: list[str], subject: str, body: str,
                  in_reply_to: str | None = None, state_dir: Path | None = None,
                  references: list[str] | None = None) -> EmailMessage:
    """`references`: the parent's References as recorded for its task (else looked up in the email source's
    index under `state_dir`)."""
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((full_name or "", settings.address))
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    domain = settings.address.rpartition("@")[2] or None
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    parent = normalize_message_id(in_reply_to or "")
    if parent:
        msg["In-Reply-To"] = parent
        chain = ([r for r in references if r != parent] + [parent]) if references else references_for(state_dir, parent)
        msg["References"] = " ".join(chain)
    msg.set_content(body if body.endswith("\n") else body + "\n")
    return msg


def send(settings, msg: EmailMessage, timeout: float = TIMEOUT) -> None:
    smtp_cfg = settings.smtp
    if smtp_cfg is None:
        raise MailError("mail.smtp is not configured")
    security = smtp_cfg.security or "tls"
    host, port = smtp_cfg.host, smtp_cfg.port or DEFAULT_PORTS[security]
    context = tls_context(settings.ca_file)
    password = None
    if settings.password_file:
        try:
            password = read_secret(settings.password_file)
        except OSError as exc:
            raise MailError(f"cannot read mail.passwordFile {settings.password_file}: {exc.strerror}") from None
    user = settings.user or settings.address
    from keystone_agents import retry
    from keystone_agents.sources.email_imap import transient_connect_error

    def connect() -> smtplib.SMTP:
        if security == "tls":
            return smtplib.SMTP_SSL(host, port, context=context, timeout=timeout)
        return smtplib.SMTP(host, port, timeout=timeout)

    try:
        # only the connect is retried (refused, reset, timed out): a message is never sent twice
        client = retry.call(connect, transient_connect_error, deadline=time.monotonic() + 2 * timeout)
        with client:
            if security == "starttls":
                client.starttls(context=context)
            if password is not None:
                client.login(user, password)
            refused = client.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(f"SMTP login failed for {user} at {host}:{port}: {exc.smtp_code}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError("SMTP server refused every recipient: " + ", ".join(
            f"{addr} ({code} {text.decode(errors='replace')})" for addr, (code, text) in exc.recipients.items())) from None
    except smtplib.SMTPException as exc:
        raise MailError(f"SMTP error at {host}:{port}: {exc}") from None
    except (OSError, socket.timeout, ssl.SSLError) as exc:
        raise MailError(f"cannot connect to SMTP {host}:{port} ({security}): {exc}") from None
    if refused:
        raise MailError("SMTP server refused: " + ", ".join(refused))
