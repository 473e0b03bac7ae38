"""`keystone-agent bus migrate`: the PostgreSQL backend's schema and registry, run as the database superuser
(NixOS: keystone-db-migrate.service, as postgres, after postgresql.service).

1. the database (created if missing) and the group roles keystone_owner (owns everything, nobody logs in),
   keystone_agent and keystone_admin;
2. a LOGIN role per agent user (member of keystone_agent) and per admin (member of keystone_admin): with peer
   authentication the Linux user is the role, no password anywhere;
3. the numbered SQL files in sql/ not yet applied (recorded in public.keystone_migrations), each in one
   transaction as keystone_owner;
4. keystone.principals = the agents and admins of the host configuration (acceptFrom, maxDepth, sendsPerHour,
   shared.writePrefixes, watchPrefixes), keystone.shared_limits = coordination.shared (maxValueBytes, quotaBytes).
"""

from __future__ import annotations

import re
from importlib import resources

from keystone_agents.coordination.base import Unavailable
from keystone_agents.coordination.registry import from_host_config

GROUP_ROLES = ("keystone_owner", "keystone_agent", "keystone_admin")


def sql_files() -> list[tuple[int, str, str]]:
    """[(number, name, text)] of the shipped migrations, in order."""
    found = []
    for entry in resources.files("keystone_agents.coordination").joinpath("sql").iterdir():
        match = re.fullmatch(r"(\d{3})_[a-z0-9_]+\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _connect(host, port, dbname):
    import psycopg

    try:
        return psycopg.connect(host=host, port=port, dbname=dbname, autocommit=True)
    except psycopg.OperationalError as exc:
        raise Unavailable(f"cannot connect to PostgreSQL database {dbname}: {str(exc).strip()}") from None


def migrate(host_config, host=None, port=None, database: str = "keystone") -> dict:
    from psycopg import sql

    registry = from_host_config(host_config, include_root=False)
    with _connect(host, port, "postgres") as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        for role in GROUP_ROLES:
            _ensure_role(conn, role, login=False)
        conn.execute(sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO keystone_owner").format(sql.Identifier(database)))
        for principal in registry.principals:
            _ensure_role(conn, principal.role, login=True)
            group = "keystone_agent" if principal.kind == "agent" else "keystone_admin"
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(principal.role)))
    applied = []
    with _connect(host, port, database) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.keystone_migrations (version int PRIMARY KEY, name text NOT NULL,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row[0] for row in conn.execute("SELECT version FROM public.keystone_migrations")}
        for number, name, text in sql_files():
            if number in done:
                continue
            with conn.transaction():
                conn.execute("SET LOCAL ROLE keystone_owner")
                conn.execute(text)
                conn.execute("RESET ROLE")
                conn.execute("INSERT INTO public.keystone_migrations (version, name) VALUES (%s, %s)", (number, name))
            applied.append(name)
        with conn.transaction():
            conn.execute("SET LOCAL ROLE keystone_owner")
            roles = [p.role for p in registry.principals]
            conn.execute("DELETE FROM keystone.principals WHERE NOT (role = ANY (%s))", (roles,))
            for p in registry.principals:
                conn.execute(
                    "INSERT INTO keystone.principals (role, name, kind, accept_from, max_depth, sends_per_hour,"
                    " write_prefixes, watch_prefixes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (role)"
                    " DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, accept_from = EXCLUDED.accept_from,"
                    " max_depth = EXCLUDED.max_depth, sends_per_hour = EXCLUDED.sends_per_hour,"
                    " write_prefixes = EXCLUDED.write_prefixes, watch_prefixes = EXCLUDED.watch_prefixes",
                    (p.role, p.name, p.kind, list(p.accept_from), p.max_depth, p.sends_per_hour,
                     list(p.write_prefixes), list(p.watch_prefixes)))
            conn.execute("UPDATE keystone.shared_limits SET max_value_bytes = %s, quota_bytes = %s",
                         (registry.max_value_bytes, registry.quota_bytes))
        version = conn.execute("SELECT max(version) FROM public.keystone_migrations").fetchone()[0]
    return {"database": database, "version": version, "applied": applied,
            "agents": [p.name for p in registry.agents], "admins": [p.name for p in registry.admins]}


def _ensure_role(conn, role: str, login: bool) -> None:
    from psycopg import sql

    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        conn.execute(sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(sql.Identifier(role)))
