"""`init --notes-repo URL`: make a fresh agent's notes/ a git repo that `keystone-agent sync` can sync at once.

* The remote has commits: notes/ becomes a clone of it; scaffolded files the remote does not have are kept
  (uncommitted: the first sync commits and pushes them), the remote's own files win.
* The remote is empty: notes/ (the scaffold) becomes a fresh repository on branch main, committed and pushed
  to the remote as its upstream.

Git runs through the one git layer (keystone_agents/git.py) with the agent's git environment (identity,
ssh command), so what init does is what sync will do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from keystone_agents.git import Git, GitError, clone as git_clone, redact


class NotesRepoError(Exception):
    """The notes repo could not be reached or set up; the message is one line for the operator."""


def probe(url: str) -> bool:
    """Whether the remote has any commits (True) or is empty (False); NotesRepoError if it cannot be read."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        out = Git(Path.cwd(), env).run("ls-remote", "--heads", "--", url, timeout=60).stdout
    except GitError as exc:
        raise NotesRepoError(f"cannot read the notes repo {redact(url)}: {exc.detail}") from None
    return bool(out.strip())


def setup(notes: Path, url: str, env: dict[str, str], has_commits: bool, commit_prefix: str) -> str:
    """Make `notes` (already scaffolded) sync with `url`; → what was done, one line."""
    try:
        if has_commits:
            return _adopt_clone(notes, url, env)
        return _push_fresh(notes, url, env, commit_prefix)
    except GitError as exc:
        raise NotesRepoError(f"cannot set up {notes} with {redact(url)}: {exc.detail}") from None


def _adopt_clone(notes: Path, url: str, env: dict[str, str]) -> str:
    staging = Path(tempfile.mkdtemp(prefix=".notes-clone-", dir=notes.parent))
    clone = staging / "notes"
    try:
        git_clone(url, clone, env)
        kept = 0
        for path in sorted(notes.rglob("*")):
            rel = path.relative_to(notes)
            target = clone / rel
            if path.is_dir() and not path.is_symlink():
                continue
            if os.path.lexists(target):
                continue  # the remote's own file wins
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target, follow_symlinks=False)
            kept += 1
        shutil.rmtree(notes)
        clone.rename(notes)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return (f"notes/ is a clone of {redact(url)}" + (f"; {kept} scaffolded file(s) it did not have are added "
                                                       "(the first sync commits and pushes them)" if kept else ""))


def _push_fresh(notes: Path, url: str, env: dict[str, str], commit_prefix: str) -> str:
    git = Git(notes, env)
    git.run("init", "--quiet", "--initial-branch=main")
    git.run("remote", "add", "origin", url)
    git.commit_all(f"{commit_prefix}: initial notes")
    git.run("push", "--quiet", "--set-upstream", "origin", "main", timeout=120, network=True)
    return f"notes/ is a new repository pushed to {redact(url)} (branch main)"
