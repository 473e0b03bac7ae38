"""Helpers for the notes-sync tests: bare remotes, agent homes configured for sync, reading results."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from keystone_agents import scaffold
from keystone_agents.notes_sync.report import run_order

SEED_IDENTITY = ("-c", "user.name=Human", "-c", "user.email=human@example.com", "-c", "commit.gpgsign=false")


def git(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.strip()


def make_remote(root: Path, *, seed: bool = True) -> Path:
    """A bare repo (branch main); with `seed`, one commit holding TODO.md."""
    bare = root / "remote" / "notes.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    if seed:
        work = root / "seed"
        git("clone", "--quiet", str(bare), str(work))
        (work / "TODO.md").write_text("line one\nshared line\nline three\n")
        git("add", "-A", cwd=work)
        git(*SEED_IDENTITY, "commit", "--quiet", "-m", "seed", cwd=work)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
        shutil.rmtree(work)
    return bare


def human_clone(bare: Path, dest: Path) -> Path:
    git("clone", "--quiet", str(bare), str(dest))
    return dest


def human_commit(work: Path, message: str) -> None:
    git("add", "-A", cwd=work)
    git(*SEED_IDENTITY, "commit", "--quiet", "-m", message, cwd=work)


def make_home(root: Path, name: str, repo: str | None, **notes) -> Path:
    """A scaffolded agent home (agent 'demo', host `host-<name>`) whose notes dir is absent, configured to sync."""
    home = root / name
    scaffold.init(home, scaffold.context("demo", "Demo Agent", "demo@example.com"))
    shutil.rmtree(home / "notes")  # the notes dir comes from the remote
    config_file = home / ".config" / "keystone-agent" / "config.json"
    config = json.loads(config_file.read_text())
    config.update(
        host=f"host-{name}",
        textfileDir=str(home / "metrics"),
        notes={"repo": repo, **notes},
    )
    config_file.write_text(json.dumps(config, indent=2))
    return home


def remote_head(bare: Path, ref: str = "main") -> str | None:
    proc = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() or None


def remote_show(bare: Path, spec: str) -> str:
    return git("--git-dir", str(bare), "show", spec)


def remote_branches(bare: Path) -> list[str]:
    out = git("--git-dir", str(bare), "for-each-ref", "--format=%(refname:short)", "refs/heads")
    return [line for line in out.splitlines() if line]


def records(home: Path) -> list[dict]:
    directory = home / ".local/state/agent-task-loop/logs/notes-sync"
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"), key=run_order)]


def last_record(home: Path) -> dict:
    return records(home)[-1]


def run_logs(home: Path) -> str:
    directory = home / ".local/state/agent-task-loop/logs/notes-sync"
    return "".join(p.read_text() for p in sorted(directory.glob("*.log"), key=run_order))


def metrics(home: Path) -> dict[str, float]:
    """{metric name: value} from the notes-sync .prom file (one sample per metric)."""
    text = (home / "metrics" / "keystone-agent-notes-sync-demo.prom").read_text()
    values = {}
    for line in text.splitlines():
        match = re.match(r'^(keystone_agent_notes_sync_\w+)\{([^}]*)\} (\S+)$', line)
        if match:
            assert 'agent="demo"' in match[2] and 'unit="agent-demo-notes-sync"' in match[2], line
            values[match[1]] = float(match[3])
    return values


COMMIT_MESSAGE = re.compile(r"^(?P<prefix>.+): \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
