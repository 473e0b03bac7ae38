"""Coordination between agents: one `Bus` interface (base.py), two backends.

- `local` (local.py client, broker.py server, store.py engine): one host without PostgreSQL. The broker,
  `keystone-agent bus serve`, is the only owner of one SQLite file and knows every caller by SO_PEERCRED.
- `postgresql` (postgres.py, sql/NNN_*.sql, migrate.py): a fleet, or one host with PostgreSQL. Every agent's
  Linux user is its database role; row-level security and SECURITY DEFINER functions enforce the rules.

Both enforce the same rules (who may send to whom, depth, rate, reply forgery) and pass the same contract
suite (tests/integration/test_bus_contract.py). `open_bus(settings)` (factory.py) picks the backend.
"""
