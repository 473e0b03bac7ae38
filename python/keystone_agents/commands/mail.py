"""keystone-agent mail send|reply: send an email (body on stdin) as the agent; `reply --task NAME` answers the
email a task was made from (recipient and threading headers as ingest recorded them)."""

from __future__ import annotations

import sys

import click

from keystone_agents.cli.common import EXIT_PROBLEMS, agent_command, echo_json

from keystone_agents.mail.reply import ADDRESS


@click.group("mail")
def mail_command():
    """Email as the agent (the configured `mail` account)."""


@mail_command.command("send")
@click.option("--to", "to", multiple=True, required=True, metavar="ADDR",
              help="Recipient address (repeat for several).")
@click.option("--subject", required=True, help="Subject line (a reply's usually starts with 'Re: ').")
@click.option("--in-reply-to", "in_reply_to", metavar="MSGID",
              help="Message-ID of the mail answered (sets In-Reply-To and References).")
@click.option("--json", "as_json", is_flag=True, help="Print the sent message's headers as JSON.")
@agent_command
def send_command(ctx, to, subject, in_reply_to, as_json):
    """Send an email over SMTP with the body read from stdin.

    From is the agent's identity (fullName and mail.address from the configuration); the SMTP server,
    login and password file are mail.smtp, mail.user and mail.passwordFile. Exit codes: 0 sent,
    1 not configured, empty body or the server refused, 2 bad usage.
    """
    from keystone_agents.mail.send import MailError, build_message, send

    config = ctx.config
    if config.mail is None or config.mail.smtp is None:
        click.echo("error: no mail account configured (mail.address and mail.smtp in the configuration)", err=True)
        sys.exit(EXIT_PROBLEMS)
    bad = [a for a in to if not ADDRESS.match(a)]
    if bad:
        click.echo(f"error: --to: not an email address: {bad[0]!r}", err=True)
        sys.exit(EXIT_PROBLEMS)
    if "\n" in subject or "\r" in subject:
        click.echo("error: --subject must be one line", err=True)
        sys.exit(EXIT_PROBLEMS)
    body = sys.stdin.read()
    if not body.strip():
        click.echo("error: the body (stdin) is empty", err=True)
        sys.exit(EXIT_PROBLEMS)
    msg = build_message(config.mail, config.full_name, list(to), subject, body, in_reply_to, ctx.space.state_dir)
    try:
        send(config.mail, msg)
    except MailError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEMS)
    headers = {k: str(msg[k]) for k in ("Message-ID", "From", "To", "Subject", "In-Reply-To", "References") if msg[k]}
    if as_json:
        echo_json(headers)
    else:
        click.echo(f"Sent {headers['Message-ID']} to {headers['To']}")


@mail_command.command("reply")
@click.option("--task", "task", required=True, metavar="NAME",
              help="The email task to answer (its name in TASKS.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Print the sent message's headers as JSON.")
@agent_command
def reply_command(ctx, task, as_json):
    """Answer the email a task was made from, with the body read from stdin.

    The recipient, subject (Re: …), In-Reply-To and References are the ones ingest recorded for TASK when it
    turned the email into a task; nothing about them is given on the command line. Exit codes: 0 sent, 1 the
    task was not made from an email, no mail account, empty body or the server refused, 2 bad usage.
    """
    from keystone_agents.mail.reply import ReplyError, lookup
    from keystone_agents.mail.send import MailError, build_message, send

    config = ctx.config
    if config.mail is None or config.mail.smtp is None:
        click.echo("error: no mail account configured (mail.address and mail.smtp in the configuration)", err=True)
        sys.exit(EXIT_PROBLEMS)
    try:
        target = lookup(ctx.space.email_replies_file, task)
    except ReplyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEMS)
    body = sys.stdin.read()
    if not body.strip():
        click.echo("error: the body (stdin) is empty", err=True)
        sys.exit(EXIT_PROBLEMS)
    msg = build_message(config.mail, config.full_name, [target.to], target.subject, body, target.message_id or None,
                        ctx.space.state_dir, references=target.references)
    try:
        send(config.mail, msg)
    except MailError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PROBLEMS)
    headers = {k: str(msg[k]) for k in ("Message-ID", "From", "To", "Subject", "In-Reply-To", "References") if msg[k]}
    if as_json:
        echo_json({"task": task, **headers})
    else:
        click.echo(f"Sent {headers['Message-ID']} to {headers['To']} (reply to task {task})")
