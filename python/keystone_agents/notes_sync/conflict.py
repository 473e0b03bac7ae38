"""What a rebase conflict leaves behind: the `conflict_pending` marker and an ISSUES.yaml entry.

The marker is a small `key=value` file in the state dir (like the pause file). While it exists, sync runs
commit locally and back the work up to the conflict branch, but never rebase or push the main branch.
`keystone-agent sync --resolved` removes it (after a human merged the conflict branch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from keystone_agents import queuefile
from keystone_agents.atomic import write_atomic
from keystone_agents.timeutil import iso_z


@dataclass
class ConflictMarker:
    since: str | None = None
    branch: str | None = None  # conflict/<host>-<timestamp>
    upstream: str | None = None  # the branch the local work could not be rebased onto (origin/main)
    remote_pushed: bool = False  # the conflict branch exists on the remote
    issue: str | None = None  # the ISSUES.yaml entry's name

    def as_dict(self) -> dict:
        return {
            "since": self.since,
            "branch": self.branch,
            "upstream": self.upstream,
            "remote_pushed": self.remote_pushed,
            "issue": self.issue,
        }


def read_marker(path: Path) -> ConflictMarker | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    marker = ConflictMarker()
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
        elif line.strip() and marker.since is None:
            marker.since = line.strip()  # the original repo-sync wrote only a timestamp
    marker.since = values.get("since", marker.since)
    marker.branch = values.get("branch") or None
    marker.upstream = values.get("upstream") or None
    marker.remote_pushed = values.get("remote_pushed") == "true"
    marker.issue = values.get("issue") or None
    return marker


def write_marker(path: Path, marker: ConflictMarker) -> None:
    lines = [
        f"since={marker.since or ''}",
        f"branch={marker.branch or ''}",
        f"upstream={marker.upstream or ''}",
        f"remote_pushed={'true' if marker.remote_pushed else 'false'}",
        f"issue={marker.issue or ''}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")


def clear_marker(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def issue_name(host: str, stamp: str) -> str:
    """A kebab-case ISSUES.yaml name (the schema's pattern) from a host name and a timestamp."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"notes-sync-conflict-{host}-{stamp}".lower()).strip("-")
    return re.sub(r"-+", "-", slug)


def add_issue(
    issues_file: Path,
    *,
    name: str,
    notes_dir: Path,
    marker: ConflictMarker,
    files: list[str],
    local_commits: int,
) -> None:
    """Append the conflict to ISSUES.yaml (validated, atomic). Raises ValidationFailed if the file is broken."""
    doc = queuefile.load(issues_file, queuefile.ISSUES)
    seq = doc.entries()
    if getattr(seq, "fa", None) is not None and seq.fa.flow_style():
        seq.fa.set_block_style()
    where = (
        f"pushed to the remote as branch {marker.branch}"
        if marker.remote_pushed
        else f"kept ONLY LOCALLY as branch {marker.branch} in {notes_dir} (pushing it to the remote failed)"
    )
    conflicting = ", ".join(files) if files else "unknown files"
    description = (
        f"Notes sync could not rebase {local_commits} local commit(s) in {notes_dir} onto {marker.upstream}: "
        f"both sides changed {conflicting}. Nothing was lost: the rebase was aborted, the local commits stay "
        f"on the local branch and were {where}. Until this is resolved, sync keeps committing locally "
        f"and does not push the main branch."
    )
    entry = {
        "name": name,
        "description": description,
        "discovered_during": "notes-sync",
        "status": "open",
        "severity": "medium",
        "workaround": (
            f"Merge {marker.branch} into {marker.upstream} (for example: git fetch; git merge "
            f"{'origin/' + marker.branch if marker.remote_pushed else marker.branch}; fix the conflict; git push), "
            f"then run `keystone-agent sync --resolved`."
        ),
        "created_at": marker.since or iso_z(),
    }
    seq.append(entry)
    doc.save()


def resolve_issue(issues_file: Path, name: str, when: str) -> bool:
    """Mark the conflict's ISSUES.yaml entry resolved; False if it is not there (a human removed it)."""
    doc = queuefile.load(issues_file, queuefile.ISSUES)
    for entry in doc.valid_entries():
        if entry.get("name") == name and entry.get("status") != "resolved":
            entry["status"] = "resolved"
            entry["fix"] = f"Merged by a human; cleared with `keystone-agent sync --resolved` at {when}."
            doc.save()
            return True
    return False
