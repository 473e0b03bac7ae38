"""The audit log's commands: `keystone-agent audit anchor|verify` (the hourly anchor and its check, run on
the host as an admin: root or agent-admins) and the functions `agentctl audit tail|query|verify` share.

Exit codes of verify: 0 intact (prints the number of entries), 1 broken (names the first bad sequence
number) or the bus refused/failed.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from keystone_agents.cli.common import echo_json
from keystone_agents.commands.bus import host_config_option


def entry_line(row: dict) -> str:
    try:
        detail = json.loads(row["entry"]).get("detail", {})
    except ValueError:
        detail = {}
    shown = " ".join(f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                     for k, v in sorted(detail.items()))
    return f"{row['seq']:>6}  {row['at']}  {row['actor']:<20} {row['action']:<22} {shown}"


def print_rows(rows: list[dict], as_json: bool) -> None:
    for row in rows:
        if as_json:
            data = json.loads(row["entry"])
            click.echo(json.dumps({**data, "hash": row["hash"]}, ensure_ascii=False))
        else:
            click.echo(entry_line(row))


def run_tail(bus, lines: int, follow: bool, as_json: bool, poll: float = 2.0) -> None:
    head = bus.audit_head()["seq"]
    after = max(0, head - lines)
    while True:
        rows = bus.audit_rows(after_seq=after, limit=1000)
        print_rows(rows, as_json)
        if rows:
            after = rows[-1]["seq"]
        if not follow:
            return
        if not rows:
            time.sleep(poll)


def run_query(bus, agent, action, since, limit, as_json) -> None:
    rows = bus.audit_rows(after_seq=0, limit=limit, actor=agent, action=action, since=since)
    if as_json:
        echo_json([{**json.loads(r["entry"]), "hash": r["hash"]} for r in rows])
    else:
        print_rows(rows, False)


def run_verify(bus, anchors_file: Path | None, as_json: bool) -> int:
    from keystone_agents.coordination import anchor, audit

    anchors = []
    if anchors_file is not None:
        try:
            anchors = anchor.parse_anchors(anchors_file)
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"--anchors: {exc}") from None
    verdict = audit.verify(anchor.all_rows(bus), anchors)
    if as_json:
        echo_json({**verdict.to_json(), "anchors_checked": len(anchors)})
    elif verdict.ok:
        extra = f", {len(anchors)} anchors match" if anchors_file is not None else ""
        click.echo(f"audit log intact: {verdict.entries} entries (head seq {verdict.head_seq}){extra}")
    else:
        click.echo(f"audit log BROKEN at seq {verdict.first_bad_seq}: {verdict.reason} "
                   f"({verdict.entries} entries before it verify)", err=True)
    return 0 if verdict.ok else 1


@contextmanager
def host_bus(host_config: str | None, as_json: bool = False):
    from keystone_agents.agentctl import hostconfig
    from keystone_agents.commands.comms import bus_session
    from keystone_agents.coordination.factory import settings_from_host
    from keystone_agents.problems import ValidationFailed

    try:
        config = hostconfig.load(host_config)
    except ValidationFailed as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    with bus_session(settings_from_host(config.coordination or {}), as_json) as bus:
        yield bus


@click.group("audit")
def audit_command():
    """The coordination bus's tamper-evident audit log: anchor (hourly timer), verify."""


@audit_command.command("anchor")
@host_config_option
@click.option("--textfile-dir", default=None, metavar="DIR", envvar="PROMETHEUS_TEXTFILE_DIR",
              help="Write keystone_audit_head_seq to DIR/keystone-audit-anchor.prom (node_exporter textfile).")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append the anchor as a JSON line to this file.")
@click.option("--json", "as_json", is_flag=True)
def anchor_command(host_config, textfile_dir, record, as_json):
    """Record the chain's head (seq, hash) outside the database: a journal event `audit_anchor seq=… hash=…`
    on stdout, the gauge keystone_audit_head_seq, and an `audit.anchor` entry in the log itself."""
    with host_bus(host_config, as_json) as bus:
        head = bus.audit_head()
        backend = bus.identity()["backend"]
        bus.audit_append("audit.anchor", {"seq": head["seq"], "hash": head["hash"]})
    if textfile_dir:
        from keystone_agents.metrics import write_metrics

        write_metrics(Path(textfile_dir) / "keystone-audit-anchor.prom", {"backend": backend}, {
            "keystone_audit_head_seq": ("Sequence number of the audit log's head at the last anchor.", head["seq"]),
            "keystone_audit_anchor_timestamp_seconds": ("When the audit log was last anchored.", time.time()),
        })
    if record is not None:
        with open(record, "a", encoding="utf-8") as out:
            out.write(json.dumps({"seq": head["seq"], "hash": head["hash"], "backend": backend}) + "\n")
    if as_json:
        echo_json({"seq": head["seq"], "hash": head["hash"], "backend": backend})
    else:
        click.echo(f"event=audit_anchor backend={backend} seq={head['seq']} hash={head['hash']}")


@audit_command.command("verify")
@host_config_option
@click.option("--anchors", "anchors_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Journal output (audit_anchor lines) or NDJSON anchors: each must be a prefix.")
@click.option("--json", "as_json", is_flag=True)
def verify_command(host_config, anchors_file, as_json):
    """Walk the chain from the genesis: exit 0 with the entry count when intact, 1 naming the first bad seq."""
    with host_bus(host_config, as_json) as bus:
        code = run_verify(bus, anchors_file, as_json)
    sys.exit(code)
