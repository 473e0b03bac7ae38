"""`keystone-agent bus`: the coordination bus's own services (the broker, database migrations)."""

from __future__ import annotations

import sys

import click

from keystone_agents.cli.common import echo_json
from keystone_agents.coordination.base import BusError
from keystone_agents.problems import ValidationFailed

host_config_option = click.option(
    "--host-config", default=None, metavar="FILE", envvar="AGENTCTL_CONFIG",
    help="The host configuration naming the agents and admins (default /etc/keystone-agents/agentctl.json).")


@click.group("bus")
def bus_command():
    """The coordination bus: `serve` (the local backend's broker), `migrate` (the PostgreSQL backend)."""


@bus_command.command("serve")
@click.option("--stdio", is_flag=True,
              help="Serve the one connection on stdin/stdout (systemd socket with Accept=yes).")
@host_config_option
@click.option("--database", default=None, metavar="FILE", help="The SQLite file (default: coordination.local.database).")
@click.option("--socket", "sock", default=None, metavar="PATH", help="Socket to listen on (without --stdio).")
@click.option("--wake-dir", default=None, metavar="DIR", help="Wake files directory (default: coordination.local.wakeDir).")
def serve_command(stdio, host_config, database, sock, wake_dir):
    """Run the local broker: the only owner of the bus database; callers are identified by SO_PEERCRED and
    must be agents or admins of the host configuration."""
    import os

    from keystone_agents.coordination.broker import BrokerSettings, listen, serve_stdio

    os.umask(0o077)  # the database and its -wal/-shm files: the broker's user only
    try:
        settings = BrokerSettings.load(host_config, database, sock, wake_dir)
    except ValidationFailed as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    if stdio:
        sys.exit(serve_stdio(settings))
    click.echo(f"keystone-bus: listening on {settings.socket}", err=True)
    try:
        sys.exit(listen(settings))
    except KeyboardInterrupt:
        sys.exit(0)
    except OSError as exc:
        click.echo(f"error: cannot listen on {settings.socket}: {exc.strerror or exc}", err=True)
        sys.exit(1)


@bus_command.command("migrate")
@host_config_option
@click.option("--host", "pg_host", default=None, help="PostgreSQL host or socket dir (default: coordination.postgresql.host, $PGHOST).")
@click.option("--port", "pg_port", type=int, default=None, help="Port (default: coordination.postgresql.port, $PGPORT).")
@click.option("--database", default=None, help="Database (default: coordination.postgresql.database).")
@click.option("--json", "as_json", is_flag=True)
def migrate_command(host_config, pg_host, pg_port, database, as_json):
    """Apply the numbered SQL migrations and register the agents and admins (run as the database superuser:
    creates a role per agent user and per admin, grants keystone_agent / keystone_admin)."""
    from keystone_agents.agentctl import hostconfig
    from keystone_agents.coordination.migrate import migrate

    try:
        host = hostconfig.load(host_config)
    except ValidationFailed as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    pg = (host.coordination or {}).get("postgresql") or {}
    try:
        report = migrate(host, host=pg_host or pg.get("host"), port=pg_port or pg.get("port"),
                         database=database or pg.get("database") or "keystone")
    except BusError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    if as_json:
        echo_json(report)
    else:
        click.echo(f"schema version {report['version']} (applied: {', '.join(report['applied']) or 'none'}); "
                   f"{len(report['agents'])} agent(s), {len(report['admins'])} admin(s) registered")
