"""Autonomous mode: after an execution whose report says `"status": "continue"`, the runtime resumes the same
CLI session with continuation guidance only (never the original task prompt again), up to
`exec.maxAutoTurns` continuations; then the task is blocked with reason `max-auto-turns`, and
`agentctl AGENT resume TASK [--prompt …]` (keystone-agent continue) resumes the stored session.

Sessions: claude `--resume <session_id>` (the result's `session_id`), codex `exec resume <thread_id>`
(`thread.started`), gemini `--resume <session_id>` (the stream's `init`). `command` and `openai` have no
session: they are re-prompted with the previous prompt and answer followed by the guidance.
"""

from __future__ import annotations

MAX_AUTO_TURNS_REASON = "max-auto-turns"
SESSION_PROVIDERS = ("claude", "codex", "gemini")

GUIDANCE = ("Continue where you left off in this session. Do not start over: pick up from your last step, "
            "and when you are done write your report to $KEYSTONE_TASK_RESULT as before "
            '("status": "completed", "blocked", or "continue" if you need another turn).')


def wanted(config, report: dict | None) -> bool:
    return config.exec.mode == "autonomous" and bool(report) and report.get("status") == "continue"


def guidance(report: dict | None, extra: str | None = None) -> str:
    """The continuation prompt: the guidance, the agent's own last note, and a human's words if given."""
    parts = [GUIDANCE]
    note = (report or {}).get("message")
    if isinstance(note, str) and note.strip():
        parts.append(f"Your last report said: {note.strip()[:2000]}")
    if extra and extra.strip():
        parts.append(f"Guidance from your operator: {extra.strip()}")
    return "\n\n".join(parts)


def reprompt(previous_prompt: str, answer: str, text: str) -> str:
    """For providers without a session: the conversation so far, then the guidance."""
    return f"{previous_prompt}\n\n--- your previous answer ---\n{answer}\n--- end ---\n\n{text}"


def stored_session(conn, task: str) -> dict | None:
    """The newest execution of `task` that recorded a session id: provider, session_id, auto_turn."""
    row = conn.execute(
        "SELECT provider, session_id, auto_turn FROM task_executions WHERE task = ? AND session_id IS NOT NULL "
        "AND session_id != '' ORDER BY id DESC LIMIT 1", (task,)).fetchone()
    return dict(row) if row else None

