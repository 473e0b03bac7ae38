"""Reading a provider CLI's JSONL event stream while it runs: tool calls are counted, the session id is kept,
and the run is stopped when it asks for more tool calls than `maxIterations` allows.

The formats (one JSON object per line on stdout):
* claude `--print --output-format stream-json --verbose`: `{"type": "system", "subtype": "init", "session_id"}`,
  `{"type": "assistant", "message": {"content": [{"type": "tool_use", "id", "name", "input"}, …]}}`,
  `{"type": "user", "message": {"content": [{"type": "tool_result", …}]}}`, and last the `{"type": "result", …}`
  object that `--output-format json` prints alone. A tool call = one `tool_use` content block.
* codex `exec --json`: `{"type": "thread.started", "thread_id"}`, `turn.started`, `item.started` /
  `item.completed` with `item.type` `command_execution`, `file_change`, `mcp_tool_call`, `web_search`,
  `agent_message`, `reasoning`, …, `turn.completed`. A tool call = one `item.started` of a tool item type.
* gemini `--output-format stream-json`: `{"type": "init", "session_id", "model"}`, `message` (role, content,
  delta), `tool_use` (tool_name, tool_id, parameters), `tool_result`, `error`, `result` (status, stats).
  A tool call = one `tool_use` event.

The limit is the number of tool calls an execution may make: the run is stopped when the CLI asks for one
more (the (N+1)th call is never executed), so exactly N ran.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

CODEX_TOOL_ITEMS = ("command_execution", "file_change", "mcp_tool_call", "web_search")


def claude_event(event: dict) -> tuple[int, str | None]:
    """→ (tool calls in this event, session id if it names one)."""
    calls = 0
    if event.get("type") == "assistant":
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        content = message.get("content") if isinstance(message.get("content"), list) else []
        calls = sum(1 for block in content if isinstance(block, dict) and block.get("type") == "tool_use")
    session = event.get("session_id")
    return calls, session if isinstance(session, str) and session else None


def codex_event(event: dict) -> tuple[int, str | None]:
    kind = event.get("type")
    if kind == "thread.started":
        thread = event.get("thread_id")
        return 0, thread if isinstance(thread, str) and thread else None
    if kind == "item.started":
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        return (1 if item.get("type") in CODEX_TOOL_ITEMS else 0), None
    return 0, None


def gemini_event(event: dict) -> tuple[int, str | None]:
    kind = event.get("type")
    if kind == "init":
        session = event.get("session_id")
        return 0, session if isinstance(session, str) and session else None
    return (1 if kind == "tool_use" else 0), None


READERS = {"claude": claude_event, "codex": codex_event, "gemini": gemini_event}


@dataclass
class EventStream:
    """Fed stdout as it arrives (any chunking); `feed` returns a stop reason once the limit is passed."""

    provider: str
    limit: int | None = None
    tool_calls: int = 0
    session_id: str | None = None
    stopped: str = ""
    _partial: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def feed(self, text: str) -> str | None:
        reader = READERS[self.provider]
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                calls, session = reader(event)
                if session and not self.session_id:
                    self.session_id = session
                self.tool_calls += calls
                if self.limit is not None and self.tool_calls > self.limit and not self.stopped:
                    self.stopped = (f"asked for tool call {self.tool_calls}; maxIterations is {self.limit}: "
                                    "stopped")
                    return self.stopped
        return None

    @property
    def executed_tool_calls(self) -> int:
        """Tool calls that ran: those asked for, minus the one refused at the limit."""
        return min(self.tool_calls, self.limit) if self.stopped and self.limit is not None else self.tool_calls
