"""Is this directory an agent home? One answer for every command.

A directory is an agent home when it holds a queue file (TASKS.yaml, PROJECTS.yaml, SCHEDULES.yaml,
ISSUES.yaml) or a configuration is found for it (`--config`, `$KEYSTONE_AGENT_CONFIG`, or
`<home>/.config/keystone-agent/config.json`). A freshly provisioned agent whose only file is the configuration
the NixOS module wrote is a home: its first loop run writes the empty queue files (`ensure_queue_files`).

Every command given `--home DIR` refuses a directory that is not a home — before it creates anything there —
except `init`, which makes one. `validate` also refuses the default home when it is not one.
"""

from __future__ import annotations

import os
from pathlib import Path

from keystone_agents.atomic import write_atomic

# file name → top-level key (the same as queuefile's kinds; kept here so the loop does not import ruamel)
QUEUE_FILES = {"TASKS.yaml": "tasks", "PROJECTS.yaml": "projects", "SCHEDULES.yaml": "schedules",
               "ISSUES.yaml": "issues"}


def home_problem(home: Path, config_path: str | os.PathLike | None = None) -> str | None:
    """Why `home` is not an agent home, or None."""
    from keystone_agents.config import find_config_path

    home = Path(home)
    fix = f"create one with `keystone-agent init {home}`, or give --home of an agent"
    if not home.exists():
        return f"no agent home at {home}: the directory does not exist; {fix}"
    if not home.is_dir():
        return f"no agent home at {home}: not a directory; {fix}"
    if any(os.path.lexists(home / name) for name in QUEUE_FILES):
        return None
    if find_config_path(config_path, home) is not None:
        return None
    return (f"no agent home at {home}: no queue file ({', '.join(QUEUE_FILES)}) and no configuration "
            f"(--config, $KEYSTONE_AGENT_CONFIG or {home}/.config/keystone-agent/config.json); {fix}")


def ensure_queue_files(home: Path) -> list[Path]:
    """Write an empty queue file for each one that is missing (a home provisioned with only its config)."""
    written = []
    for name, key in QUEUE_FILES.items():
        path = Path(home) / name
        if os.path.lexists(path):
            continue
        write_atomic(path, f"# {name} — written empty by keystone-agent on the first run (docs/file-formats.md)\n"
                           f"{key}: []\n", mode=0o644)
        written.append(path)
    return written
