"""`keystone-agent policy check --cli claude|codex|gemini`: the pre-tool hook every provider CLI calls.

The CLI writes the tool call as JSON on stdin (claude `PreToolUse`, codex `PreToolUse`, gemini `BeforeTool`:
`tool_name`, `tool_input`, …); the hook normalizes it to an action (model.py), decides its tier, acts on it
(notify: audit entry and a message to the admins; approval_required: consume an approved grant or file a
request; blocked: audit entry) and answers in the CLI's own terms:

- claude: exit 0 with `hookSpecificOutput.permissionDecision` allow|deny (+ reason);
- codex:  exit 0 (allow) or exit 2 with the reason on stderr (deny);
- gemini: exit 0 with `{"decision": "allow"|"deny", "reason"}` (and nothing else on stdout).

It fails closed: any error (malformed input, unreadable policy, a crash) exits 2 with the reason on stderr,
which all three CLIs document as "block the tool call" (claude treats exit 1 as a non-blocking error, so the
hook never exits 1). Every decision is appended to $KEYSTONE_POLICY_LOG (the run's decision log, which the
execute stage reads when the provider exits: outcome.py).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from keystone_agents.policy import model
from keystone_agents.policy.model import Action

CLIS = ("claude", "codex", "gemini")
LOG_ENV = "KEYSTONE_POLICY_LOG"
PROJECT_ENV = "KEYSTONE_TASK_PROJECT"
BLOCK = 2  # the exit code all three CLIs read as "refuse this tool call"

# Tools that neither run, write nor fetch anything (claude's planning/search helpers and gemini's): decided by
# `{"tool": "*"}` rules only, else allowed.
INERT = {"TodoWrite", "TodoRead", "ExitPlanMode", "Task", "Agent", "save_memory", "write_todos", "think"}
READ_TOOLS = {"Read": "file_path", "NotebookRead": "notebook_path", "Glob": "path", "Grep": "path", "LS": "path",
              "read_file": "file_path", "list_directory": "dir_path", "glob": "dir_path",
              "search_file_content": "dir_path", "grep": "dir_path"}
WRITE_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path",
               "write_file": "file_path", "replace": "file_path", "edit": "file_path"}
SHELL_TOOLS = {"Bash", "run_shell_command", "shell", "exec_command", "local_shell"}
PATCH_FILE = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (.+)$", re.M)
PATCH_MOVE = re.compile(r"^\*\*\* Move to: (.+)$", re.M)
URL = re.compile(r"https?://[^\s\"'<>]+")


class HookInputError(ValueError):
    pass


def _abs(path: str, cwd: str) -> str:
    path = os.path.expanduser(str(path))
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(cwd or os.getcwd(), path))


def _mcp(name: str, payload: dict) -> tuple[str, str] | None:
    context = payload.get("mcp_context") if isinstance(payload.get("mcp_context"), dict) else {}
    if context.get("server_name") and context.get("tool_name"):
        return str(context["server_name"]), str(context["tool_name"])
    if name.startswith("mcp__"):
        server, _, tool = name[5:].partition("__")
        if server and tool:
            return server, tool
    return None


def actions(cli: str, payload: Any) -> list[Action]:
    """The actions one hook payload asks for (several for a patch touching several files)."""
    if not isinstance(payload, dict):
        raise HookInputError("hook input is not a JSON object")
    name = payload.get("tool_name")
    if not isinstance(name, str) or not name:
        raise HookInputError("hook input has no tool_name")
    raw = payload.get("tool_input", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise HookInputError("tool_input is not a JSON object")
    cwd = str(payload.get("cwd") or os.getcwd())
    mcp = _mcp(name, payload)
    if mcp is not None:
        return [Action("mcp", f"{mcp[0]}/{mcp[1]}", name, raw)]
    if name in SHELL_TOOLS:
        command = raw.get("command", raw.get("cmd"))
        if isinstance(command, list) and all(isinstance(c, str) for c in command):
            import shlex

            command = shlex.join(command)
        if not isinstance(command, str) or not command.strip():
            raise HookInputError(f"{name}: tool_input.command is missing")
        if "*** Begin Patch" in command:  # codex's apply_patch through the shell tool
            return _patch_actions(command, cwd, name, raw)
        return [Action("shell", command.strip(), name, raw)]
    if name == "apply_patch" or name == "ApplyPatch":
        text = json.dumps(raw, ensure_ascii=False)
        body = raw.get("input") or raw.get("patch") or raw.get("command") or ""
        if isinstance(body, list):
            body = "\n".join(str(b) for b in body)
        return _patch_actions(str(body) or text, cwd, name, raw)
    if name in WRITE_TOOLS:
        path = raw.get(WRITE_TOOLS[name]) or raw.get("path") or raw.get("absolute_path")
        if not isinstance(path, str) or not path:
            raise HookInputError(f"{name}: tool_input.{WRITE_TOOLS[name]} is missing")
        return [Action("file.write", _abs(path, cwd), name, raw)]
    if name in READ_TOOLS:
        path = raw.get(READ_TOOLS[name]) or raw.get("path") or raw.get("absolute_path") or cwd
        return [Action("file.read", _abs(str(path), cwd), name, raw)]
    if name == "read_many_files":
        paths = raw.get("paths") or raw.get("include") or [cwd]
        return [Action("file.read", _abs(str(p), cwd), name, raw) for p in (paths if isinstance(paths, list) else [paths])]
    if name in ("WebFetch", "web_fetch"):
        urls = [raw["url"]] if isinstance(raw.get("url"), str) else URL.findall(str(raw.get("prompt") or ""))
        if not urls:
            raise HookInputError(f"{name}: no URL in tool_input")
        return [Action("web.fetch", (urlparse(u).hostname or "").lower(), name, raw) for u in urls]
    if name in ("WebSearch", "google_web_search"):
        return [Action("web.fetch", "search", name, raw)]
    if name in INERT:
        return []
    # a tool this runtime does not know: decided as an MCP-like call of the CLI itself (rules on `mcp` or
    # `tool: "*"`, else the default): never silently allowed
    return [Action("mcp", f"{cli}/{name}", name, raw)]


def _patch_actions(text: str, cwd: str, name: str, raw: dict) -> list[Action]:
    paths = PATCH_FILE.findall(text) + PATCH_MOVE.findall(text)
    if not paths:
        raise HookInputError(f"{name}: the patch names no file")
    return [Action("file.write", _abs(p.strip(), cwd), name, raw) for p in paths]


# ------------------------------------------------------------------ answers in each CLI's terms


def answer(cli: str, allowed: bool, reason: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr)."""
    if cli == "claude":
        out = {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                                      "permissionDecision": "allow" if allowed else "deny",
                                      "permissionDecisionReason": reason}}
        return 0, json.dumps(out), ""
    if cli == "gemini":
        return 0, json.dumps({"decision": "allow" if allowed else "deny", "reason": reason}), ""
    # codex: exit 0 lets the call run; exit 2 blocks it and shows stderr to the model
    return (0, "", "") if allowed else (BLOCK, "", reason + "\n")


def fail_closed(reason: str) -> tuple[int, str, str]:
    return BLOCK, "", f"keystone policy check refused this tool call: {reason}\n"


# ------------------------------------------------------------------ the check


class Checker:
    """Decides and acts. `bus_factory()` opens the bus (None: no coordination backend)."""

    def __init__(self, policy: model.Policy, bus_factory=None, log_path: str | None = None,
                 task: str | None = None, run_id: str | None = None, project: str | None = None):
        self.policy, self.bus_factory = policy, bus_factory
        self.log_path, self.task, self.run_id, self.project = log_path, task, run_id, project
        self._bus = None

    def bus(self):
        if self._bus is None:
            if self.bus_factory is None:
                return None
            self._bus = self.bus_factory()
        return self._bus

    def close(self):
        if self._bus is not None:
            self._bus.close()

    def record(self, entry: dict) -> None:
        if not self.log_path:
            return
        line = json.dumps({"at": time.time(), "task": self.task, "run_id": self.run_id, **entry}, ensure_ascii=False)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def check(self, cli: str, payload: dict) -> tuple[bool, str]:
        """(allowed, reason) for the whole tool call: refused if any of its actions is refused."""
        found = actions(cli, payload)
        if not found:
            return True, "keystone policy: allowed"
        reasons = []
        for action in found:
            ok, reason = self._one(cli, action)
            if not ok:
                return False, reason
            reasons.append(reason)
        return True, reasons[-1]

    def _one(self, cli: str, action: Action) -> tuple[bool, str]:
        decision = self.policy.decide(action, self.project)
        tier = decision.tier
        entry = {"cli": cli, "action": action.to_json(), "tier": tier, "rule": decision.rule}
        detail = {"agent": self.policy.agent, "task": self.task, "run_id": self.run_id, "cli": cli,
                  "action": action.key()[:2000], "tool": action.tool, "tier": tier, "rule": decision.rule}
        if tier == "autonomous":
            self.record({**entry, "allowed": True})
            return True, "keystone policy: autonomous"
        if tier == "notify":
            bus = self.bus()
            if bus is not None:  # the audit entry must be written, or the action does not run
                bus.policy_notify(detail)
            self.record({**entry, "allowed": True, "audited": bus is not None})
            return True, "keystone policy: allowed and reported to the admins"
        if tier == "blocked":
            bus = None
            try:
                bus = self.bus()
                if bus is not None:
                    bus.policy_notify(detail)
            except Exception:  # noqa: BLE001 - refused anyway; the refusal is in the decision log
                bus = None
            self.record({**entry, "allowed": False, "audited": bus is not None})
            return False, (f"Blocked by the agent's policy ({decision.rule}): {action.key()[:300]}. Do not retry "
                           "it or work around it; continue without it or report that the task needs it.")
        # approval_required
        bus = self.bus()
        if bus is None:
            self.record({**entry, "allowed": False})
            return False, ("This action needs a human's approval, and approvals need a coordination backend "
                           "(none is configured): refused.")
        grant = bus.approval_consume(action.sha256(), self.task or "")
        if grant:
            self.record({**entry, "allowed": True, "approval": grant, "consumed": True})
            return True, f"keystone policy: approved by a human (approval {grant}), allowed once"
        approval = bus.approval_request(str(uuid.uuid4()), self.task or "", self.run_id or "",
                                        {**action.to_json(), "args": _bounded(action.args)}, action.key()[:2000],
                                        action.sha256(), decision.rule)
        approval_id = approval["id"]
        self.record({**entry, "allowed": False, "approval": approval_id})
        return False, (f"waiting for human approval {approval_id}: {action.key()[:300]} needs a human's approval "
                       "(requested now). Do not retry it in this task and do not work around it; finish what you "
                       "can without it. The task is resumed once a human decides.")


def _bounded(args: Any) -> Any:
    text = json.dumps(args, ensure_ascii=False, default=str)
    return args if len(text) <= 16000 else {"truncated": text[:16000]}


def load_policy(policy_file: str | None, config_file: str | None) -> tuple[model.Policy, dict]:
    """(policy, coordination settings dict) from the rendered policy.json, else the agent's configuration."""
    if policy_file:
        doc = model.load_file(policy_file)
        return model.from_document(doc, home=str(doc.get("home") or os.environ.get("HOME") or "")), \
            dict(doc.get("coordination") or {})
    from keystone_agents.config import load_config

    config = load_config(config_file)
    doc = {"agent": config.agent_name, "role": config.role, "policy": config.policy}
    return model.from_document(doc, home=os.environ.get("HOME") or ""), {"__config__": config}


def bus_factory_for(coordination: dict):
    """A function opening the bus (imported only when a decision needs it: most calls are autonomous), or None."""
    config = coordination.get("__config__")
    backend = config.coordination.backend if config is not None else (coordination.get("backend") or "none")
    if backend == "none":
        return None

    def factory():
        from keystone_agents.coordination.factory import open_bus, settings_from_host

        return open_bus(config.coordination if config is not None else settings_from_host(coordination))

    return factory


def run(cli: str, policy_file: str | None, config_file: str | None, stdin_text: str) -> tuple[int, str, str]:
    """The whole hook; never raises (every failure is a refusal: fail closed)."""
    checker = None
    try:
        if cli not in CLIS:
            return fail_closed(f"unknown CLI {cli!r}")
        try:
            payload = json.loads(stdin_text)
        except ValueError as exc:
            return fail_closed(f"the hook input is not JSON ({exc})")
        policy, coordination = load_policy(policy_file, config_file)
        checker = Checker(policy, bus_factory_for(coordination), os.environ.get(LOG_ENV),
                          os.environ.get("KEYSTONE_TASK_NAME"), os.environ.get("KEYSTONE_RUN_ID"),
                          os.environ.get(PROJECT_ENV))
        allowed, reason = checker.check(cli, payload)
        return answer(cli, allowed, reason)
    except HookInputError as exc:
        return fail_closed(str(exc))
    except BaseException as exc:  # noqa: BLE001 - fail closed on anything, a crash included
        if isinstance(exc, KeyboardInterrupt):
            return fail_closed("interrupted")
        try:
            if checker is not None:
                checker.record({"cli": cli, "error": f"{type(exc).__name__}: {exc}"[:500], "allowed": False})
        except Exception:  # noqa: BLE001
            pass
        return fail_closed(f"{type(exc).__name__}: {exc}"[:500])
    finally:
        if checker is not None:
            try:
                checker.close()
            except Exception:  # noqa: BLE001
                pass


def main(cli: str, policy_file: str | None, config_file: str | None) -> None:
    try:
        text = sys.stdin.read()
    except BaseException as exc:  # noqa: BLE001
        code, out, err = fail_closed(f"cannot read stdin: {exc}")
    else:
        code, out, err = run(cli, policy_file, config_file, text)
    if out:
        sys.stdout.write(out + "\n")
    if err:
        sys.stderr.write(err)
    sys.stdout.flush()
    os._exit(code)  # nothing after this may change the exit code (no atexit handler, no flush error)


__all__ = ["run", "main", "actions", "answer", "Checker", "Path"]
