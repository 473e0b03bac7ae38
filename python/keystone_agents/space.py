"""Every path of one agent, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = Path(".local/state/agent-task-loop")


class AgentSpaceMissing(Exception):
    """The agent space (notesDir) a provider must run in is not there; the message names the path."""

    def __init__(self, path: Path, setting: str):
        self.path = path
        self.setting = setting
        super().__init__(
            f"agent space {path} does not exist (notesDir = {setting!r}); providers run there. Create it with "
            f"`keystone-agent init`, clone the notes repo (`keystone-agent sync`), or set notesDir"
        )


def agent_space_problem(space: "AgentSpace") -> AgentSpaceMissing | None:
    """Why providers cannot run in `space.notes_dir` (it is missing or not a directory), or None."""
    path = space.notes_dir
    if path.is_dir():
        return None
    return AgentSpaceMissing(path, space.notes_dir_setting)


def require_agent_space(space: "AgentSpace") -> Path:
    """The agent space, the working directory of every provider CLI run; raises AgentSpaceMissing."""
    problem = agent_space_problem(space)
    if problem is not None:
        raise problem
    return space.notes_dir


@dataclass(frozen=True)
class AgentSpace:
    """The agent's home and everything in it that the runtime reads or writes.

    The queue files live in the home (not in the notes repo): the notes repo is synced by git, the queue
    is the runtime's working state.
    """

    home: Path
    notes_dir_setting: str = "~/notes"

    @classmethod
    def from_home(cls, home: str | os.PathLike | None = None, notes_dir: str = "~/notes") -> "AgentSpace":
        if home is None:
            home = os.environ.get("HOME") or Path.home()
        return cls(Path(home).expanduser().absolute(), notes_dir)

    # queue files
    @property
    def tasks_file(self) -> Path:
        return self.home / "TASKS.yaml"

    @property
    def tasks_archive_file(self) -> Path:
        return self.home / "TASKS.archive.yaml"

    @property
    def projects_file(self) -> Path:
        return self.home / "PROJECTS.yaml"

    @property
    def schedules_file(self) -> Path:
        return self.home / "SCHEDULES.yaml"

    @property
    def issues_file(self) -> Path:
        return self.home / "ISSUES.yaml"

    def queue_files(self) -> list[tuple[Path, "queuefile.QueueKind"]]:
        from keystone_agents import queuefile  # lazy: ruamel is slow to import and the loop never needs it

        return [
            (self.tasks_file, queuefile.TASKS),
            (self.projects_file, queuefile.PROJECTS),
            (self.schedules_file, queuefile.SCHEDULES),
            (self.issues_file, queuefile.ISSUES),
        ]

    # notes repo
    @property
    def notes_dir(self) -> Path:
        setting = self.notes_dir_setting
        if setting == "~" or setting.startswith("~/"):
            return self.home / setting[2:]
        path = Path(setting)
        return path if path.is_absolute() else self.home / path

    @property
    def repos_dir(self) -> Path:
        """Clones the agent works on: `<agent space>/.repos/{owner}/{repo}` (the seed's layout)."""
        return self.notes_dir / ".repos"

    def deepwork_job_dir(self, workflow: str) -> Path:
        """Where the DeepWork job of `job/workflow` lives in the agent space (`.deepwork/jobs/<job>`)."""
        return self.notes_dir / ".deepwork" / "jobs" / workflow.split("/", 1)[0]

    def mcp_run_config(self, run_id: str) -> Path:
        """The MCP server file written for one provider run (mode 0600, removed afterwards)."""
        return self.state_dir / "mcp" / f"{run_id}.json"

    # runtime state
    @property
    def state_root(self) -> Path:
        return self.home / STATE_ROOT

    @property
    def logs_dir(self) -> Path:
        return self.state_root / "logs"

    @property
    def task_logs_dir(self) -> Path:
        return self.logs_dir / "tasks"

    @property
    def state_dir(self) -> Path:
        return self.state_root / "state"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "task-loop.lock"

    @property
    def scheduler_lock_file(self) -> Path:
        return self.state_dir / "scheduler.lock"

    @property
    def scheduler_last_run_file(self) -> Path:
        """When the scheduler last ran (ISO 8601 UTC): where its catch-up of missed occurrences starts."""
        return self.state_dir / "scheduler-last-run"

    def scheduler_log_file(self, stamp: str) -> Path:
        return self.logs_dir / f"scheduler-{stamp}.log"

    @property
    def task_texts_dir(self) -> Path:
        """Full texts of task descriptions longer than the queue keeps (sanitize.DESCRIPTION_MAX)."""
        return self.state_dir / "task-texts"

    @property
    def email_replies_file(self) -> Path:
        """Who to answer for each email task (ingest records it; `keystone-agent mail reply --task` reads it)."""
        return self.state_dir / "email-replies.json"

    @property
    def tasks_lock_file(self) -> Path:
        """Held (briefly) by every read-modify-write of TASKS.yaml: the loop, the scheduler, `tasks` edits."""
        return self.state_dir / "tasks.lock"

    @property
    def pause_file(self) -> Path:
        return self.state_dir / "paused"

    @property
    def history_db(self) -> Path:
        return self.state_dir / "history.sqlite3"

    # notes sync
    @property
    def notes_sync_lock_file(self) -> Path:
        return self.state_dir / "notes-sync.lock"

    @property
    def conflict_marker(self) -> Path:
        """Present while a notes-sync rebase conflict waits for a human (`keystone-agent sync --resolved`)."""
        return self.state_dir / "conflict_pending"

    @property
    def notes_sync_logs_dir(self) -> Path:
        """One `<timestamp>.json` record and `<timestamp>.log` per notes-sync run."""
        return self.logs_dir / "notes-sync"

    @property
    def deepwork_dir(self) -> Path:
        return self.home / ".deepwork"

    @property
    def sources_json(self) -> Path:
        return self.deepwork_dir / "sources.json"

    def ensure_state_dirs(self) -> None:
        for directory in (self.logs_dir, self.task_logs_dir, self.state_dir):
            directory.mkdir(parents=True, exist_ok=True)
