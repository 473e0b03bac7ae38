"""The policy model: tiers, normalized actions, the role catalog and rule matching (docs/policy.md).

Tiers, least to most restrictive: autonomous < notify < approval_required < blocked. An action is one of

- ("shell", COMMAND)          a command line a provider runs (claude Bash, codex Bash/exec, gemini run_shell_command);
- ("file.read", PATH)         an absolute path read;
- ("file.write", PATH)        an absolute path written or edited (claude Write/Edit, codex apply_patch, gemini write_file/replace);
- ("web.fetch", HOST)         a host fetched (claude WebFetch, gemini web_fetch);
- ("mcp", "SERVER/TOOL")      an MCP tool call;
- ("act", NAME)               one of the runtime's own consequential acts (ACTS): recognized in shell commands
                              (`git push`, `gh pr create`, `keystone-agent comms send`, …) and MCP tools.

A rule is {"match": {...}, "tier": TIER}; its match keys (all must hold) are `tool` (one of TOOLS or "*"),
`shell`, `read`, `write`, `fetch`, `mcp`, `act` (a glob for that kind's target) and `project` (a glob on the
task's project). The effective tier of an action is the most restrictive tier of every rule that matches it
(role rules, the agent's rules, project rules alike); when none matches, the agent's `policy.default`, else the
role's default.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIERS = ("autonomous", "notify", "approval_required", "blocked")
RANK = {tier: index for index, tier in enumerate(TIERS)}
TOOLS = ("shell", "file.read", "file.write", "web.fetch", "mcp", "act")
MATCH_KEYS = {"shell": "shell", "read": "file.read", "write": "file.write", "fetch": "web.fetch", "mcp": "mcp",
              "act": "act"}
ACTS = ("mail.send", "git.push", "pr.create", "comms.send", "shared.write", "agent.control")

# The runtime's acts as they appear in a command line (the first words, after `sudo`/env assignments).
SHELL_ACTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("git", "push"), "git.push"),
    (("gh", "pr", "create"), "pr.create"),
    (("tea", "pr", "create"), "pr.create"),
    (("tea", "pulls", "create"), "pr.create"),
    (("keystone-agent", "comms", "send"), "comms.send"),
    (("keystone-agent", "comms", "ask"), "comms.send"),
    (("keystone-agent", "comms", "reply"), "comms.send"),
    (("keystone-agent", "shared", "set"), "shared.write"),
    (("keystone-agent", "shared", "delete"), "shared.write"),
    (("keystone-agent", "mail", "send"), "mail.send"),
    (("agentctl",), "agent.control"),
)
# ... and as MCP tools of the runtime's own server (`keystone-agent mcp serve`)
MCP_ACTS = {"keystone/comms_send": "comms.send", "keystone/comms_ask": "comms.send",
            "keystone/comms_reply": "comms.send", "keystone/shared_set": "shared.write",
            "keystone/shared_delete": "shared.write"}

# The seed's role tool matrix (seeds/003: foxctl), as this runtime's actions: every role has the first group's
# tools; fs_write_file is the coder's; the agent_* tools are the overseer's. tests/unit/test_policy.py checks
# the catalog below against this table and this table against the seed's text.
SEED_TOOLS: dict[str, tuple[str, str]] = {
    "fs_read_file": ("file.read", "/home/agent/notes/README.md"),
    "fs_list_dir": ("shell", "ls -la"),
    "code_search": ("shell", "rg TODO"),
    "context_search": ("shell", "grep -rn context ."),
    "context_grep": ("shell", "grep -rn pattern ."),
    "fs_write_file": ("file.write", "~/notes/result.md"),
    "agent_spawn": ("act", "agent.control"),
    "agent_list": ("act", "agent.control"),
    "agent_status": ("act", "agent.control"),
    "agent_kill": ("act", "agent.control"),
    "agent_hierarchy": ("act", "agent.control"),
    "agent_wait": ("act", "agent.control"),
}
SEED_ROLE_TOOLS = {
    "all": ("fs_read_file", "fs_list_dir", "code_search", "context_search", "context_grep"),
    "coder": ("fs_write_file",),
    "overseer": ("agent_spawn", "agent_list", "agent_status", "agent_kill", "agent_hierarchy", "agent_wait"),
}

READ_ONLY_SHELL = ("ls*", "cat *", "head *", "tail *", "wc *", "rg *", "grep *", "find *", "pwd", "echo *",
                   "git log*", "git diff*", "git status*", "git show*", "date*", "true", "test *")


def _rules(*pairs: tuple[dict, str]) -> tuple["Rule", ...]:
    return tuple(Rule(match=m, tier=t, origin="role") for m, t in pairs)


_READS = ((({"read": "**"}), "autonomous"),) + tuple(({"shell": p}, "autonomous") for p in READ_ONLY_SHELL) + (
    ({"mcp": "keystone/comms_inbox"}, "autonomous"), ({"mcp": "keystone/shared_get"}, "autonomous"),
    ({"mcp": "keystone/shared_list"}, "autonomous"), ({"mcp": "keystone/state_*"}, "autonomous"),
    ({"mcp": "keystone/approval_status"}, "autonomous"), ({"mcp": "keystone/report"}, "autonomous"),
)
# Floors every built-in role keeps (a role override replaces them only by replacing the role).
_FLOOR = (({"shell": "sudo*"}, "blocked"), ({"write": "/etc/**"}, "blocked"),
          ({"write": "/etc/keystone-agents/**"}, "blocked"), ({"act": "agent.control"}, "blocked"))


@dataclass(frozen=True)
class Rule:
    match: dict
    tier: str
    origin: str = "agent"  # role | agent | project: where it came from (named in decisions and the audit)

    def describe(self) -> str:
        return f"{self.origin}: {json.dumps(self.match, sort_keys=True)} → {self.tier}"


@dataclass(frozen=True)
class Role:
    name: str
    default: str
    rules: tuple[Rule, ...]
    description: str = ""
    tool_defaults: tuple[tuple[str, str], ...] = ()  # (tool kind, tier): the default of one kind of action

    def default_for(self, kind: str) -> str:
        return dict(self.tool_defaults).get(kind, self.default)


BUILTIN_ROLES: dict[str, Role] = {
    "researcher": Role("researcher", "blocked", _rules(
        *_READS, *_FLOOR,
        ({"fetch": "*"}, "autonomous"),
        ({"write": "~/notes/research/**"}, "autonomous"),
        ({"act": "comms.send"}, "notify"),
        ({"act": "shared.write"}, "notify"),
    ), "reads, searches and fetches; writes only under ~/notes/research; other commands need approval",
        tool_defaults=(("shell", "approval_required"),)),
    "coder": Role("coder", "autonomous", _rules(
        *_READS,
        ({"shell": "sudo*"}, "blocked"), ({"write": "/etc/**"}, "blocked"),
        ({"act": "agent.control"}, "blocked"),
        ({"act": "git.push"}, "notify"), ({"act": "pr.create"}, "notify"),
        ({"shell": "git push --force*"}, "approval_required"), ({"shell": "git push -f*"}, "approval_required"),
        ({"act": "mail.send"}, "notify"),
    ), "reads and writes its files and worktrees, runs commands; pushes and pull requests are reported"),
    "reviewer": Role("reviewer", "blocked", _rules(
        *_READS, *_FLOOR,
        ({"shell": "gh pr review*"}, "notify"), ({"shell": "gh pr comment*"}, "notify"),
        ({"shell": "gh pr view*"}, "autonomous"), ({"shell": "gh pr diff*"}, "autonomous"),
        ({"act": "comms.send"}, "notify"),
    ), "reads and reviews; never writes files"),
    "planner": Role("planner", "blocked", _rules(
        *_READS, *_FLOOR,
        ({"act": "shared.write"}, "autonomous"),
        ({"mcp": "keystone/shared_set"}, "autonomous"),
        ({"act": "comms.send"}, "notify"),
        ({"write": "~/notes/TASKS.yaml"}, "autonomous"),
    ), "reads and plans: writes shared state (plans) and messages other agents; never writes files"),
    "overseer": Role("overseer", "blocked", _rules(
        *_READS,
        ({"shell": "sudo*"}, "blocked"), ({"write": "/etc/**"}, "blocked"),
        ({"act": "agent.control"}, "autonomous"),
        ({"act": "comms.send"}, "autonomous"),
        ({"mcp": "keystone/comms_*"}, "autonomous"),
        ({"act": "shared.write"}, "notify"),
        ({"mcp": "keystone/shared_*"}, "notify"),
    ), "supervises other agents (agentctl, comms); never approves approvals (humans only)"),
}


class PolicyError(ValueError):
    """A policy that cannot be used (unknown role or tier, a match key that does not exist)."""


@dataclass(frozen=True)
class Action:
    kind: str  # one of TOOLS
    target: str
    tool: str = ""  # the CLI's own tool name (Bash, write_file, …)
    args: Any = None  # the tool input as the CLI gave it (for the approval's record)

    def key(self) -> str:
        return f"{self.kind}:{self.target}"

    def sha256(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()

    def to_json(self) -> dict:
        return {"kind": self.kind, "target": self.target, "tool": self.tool}


@dataclass(frozen=True)
class Decision:
    tier: str
    action: Action
    rule: str  # the rule that decided it (or the default)
    parts: tuple = ()  # (Action, tier, rule) of each part (a compound command's pieces, its acts)

    @property
    def allowed(self) -> bool:
        return self.tier in ("autonomous", "notify")


@dataclass(frozen=True)
class Policy:
    agent: str
    role: Role | None
    default: str | None
    rules: tuple[Rule, ...]
    home: str = ""

    def all_rules(self, project: str | None = None) -> list[Rule]:
        """The role's rules and the agent's (project rules among them: `match.project` decides where they
        apply)."""
        return list(self.role.rules if self.role else ()) + list(self.rules)

    def tier_of(self, action: Action, project: str | None = None) -> tuple[str, str]:
        """(tier, rule description) of one simple action."""
        best: tuple[str, str] | None = None
        for rule in self.all_rules(project):
            if matches(rule.match, action, project, self.home):
                if best is None or RANK[rule.tier] > RANK[best[0]]:
                    best = (rule.tier, rule.describe())
        if best is None:
            if self.default:
                return self.default, f"policy.default → {self.default}"
            if self.role:
                tier = self.role.default_for(action.kind)
                return tier, f"role {self.role.name} default for {action.kind} → {tier}"
            return "autonomous", "no role, no policy.default → autonomous"
        return best

    def decide(self, action: Action, project: str | None = None) -> Decision:
        """The most restrictive tier of the action and of every part it implies (a compound command's pieces,
        the runtime acts it performs)."""
        parts = [action] + implied(action)
        decided = []
        for part in parts:
            tier, rule = self.tier_of(part, project)
            decided.append((part, tier, rule))
        worst = max(decided, key=lambda d: RANK[d[1]])
        return Decision(worst[1], action, worst[2], tuple(decided))


# ------------------------------------------------------------------ matching


def expand(pattern: str, home: str) -> str:
    if home and (pattern == "~" or pattern.startswith("~/")):
        return home.rstrip("/") + pattern[1:]
    return pattern


def glob_re(pattern: str) -> re.Pattern:
    """`**` any characters (slashes too), `*` any but `/`, `?` one; for shell commands `*` crosses nothing
    special (commands are matched with fnmatch)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def shell_matches(pattern: str, command: str) -> bool:
    """A glob on the whole command (`*` matches anything); a pattern without wildcards also matches the same
    command with more arguments (`git push` matches `git push origin main`)."""
    command = " ".join(command.split())
    pattern = " ".join(pattern.split())
    if fnmatch.fnmatchcase(command, pattern):
        return True
    if not any(c in pattern for c in "*?["):
        return command.startswith(pattern + " ")
    return False


def matches(match: dict, action: Action, project: str | None, home: str) -> bool:
    for key, want in match.items():
        if key == "tool":
            if want != "*" and want != action.kind:
                return False
        elif key == "project":
            if project is None or not fnmatch.fnmatchcase(project, str(want)):
                return False
        elif key in MATCH_KEYS:
            if MATCH_KEYS[key] != action.kind:
                return False
            if key == "shell":
                if not shell_matches(str(want), action.target):
                    return False
            elif key in ("read", "write"):
                if not glob_re(expand(str(want), home)).match(action.target):
                    return False
            elif key == "fetch":
                if not fnmatch.fnmatchcase(action.target.lower(), str(want).lower()):
                    return False
            elif not fnmatch.fnmatchcase(action.target, str(want)):
                return False
        else:
            raise PolicyError(f"unknown match key {key!r} (keys: tool, {', '.join(MATCH_KEYS)}, project)")
    return True


SEPARATORS = re.compile(r"\s*(?:&&|\|\||;|\||\n|&(?!&)|\$\(|`|\))\s*")


def segments(command: str) -> list[str]:
    """The simple commands of a command line (split at ; && || | & newlines and command substitutions)."""
    return [s.strip() for s in SEPARATORS.split(command) if s and s.strip()]


def _words(segment: str) -> list[str]:
    try:
        words = shlex.split(segment)
    except ValueError:
        words = segment.split()
    while words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]) or words[0] in ("sudo", "env", "command",
                                                                                      "exec", "nohup", "time")):
        words = words[1:]
    return [os.path.basename(words[0])] + words[1:] if words else []


def implied(action: Action) -> list[Action]:
    """The parts an action implies: a compound command's simple commands (when there are several), and the
    runtime acts a command or MCP tool performs."""
    parts: list[Action] = []
    if action.kind == "shell":
        pieces = segments(action.target)
        if len(pieces) > 1:
            parts += [Action("shell", p, action.tool) for p in pieces]
        for piece in pieces or [action.target]:
            words = _words(piece)
            for prefix, act in SHELL_ACTS:
                if tuple(words[:len(prefix)]) == prefix:
                    parts.append(Action("act", act, action.tool))
                    break
            # `bash -c '…'`/`sh -c`: what runs is the string
            if len(words) >= 3 and words[0] in ("bash", "sh", "zsh", "dash") and words[1] == "-c":
                inner = Action("shell", words[2], action.tool)
                parts += [inner] + implied(inner)
    elif action.kind == "mcp" and action.target in MCP_ACTS:
        parts.append(Action("act", MCP_ACTS[action.target], action.tool))
    return parts


# ------------------------------------------------------------------ loading


def check_tier(value: Any, where: str) -> str:
    if value not in TIERS:
        raise PolicyError(f"{where}: tier must be one of {', '.join(TIERS)}, not {value!r}")
    return value


def parse_rules(items: Any, where: str, origin: str) -> tuple[Rule, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise PolicyError(f"{where}: rules must be a list")
    rules = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("match"), dict):
            raise PolicyError(f"{here}: a rule is {{\"match\": {{...}}, \"tier\": TIER}}")
        match = item["match"]
        for key, value in match.items():
            if key not in MATCH_KEYS and key not in ("tool", "project"):
                raise PolicyError(f"{here}.match.{key}: unknown match key (keys: tool, {', '.join(MATCH_KEYS)}, "
                                  "project)")
            if not isinstance(value, str) or not value:
                raise PolicyError(f"{here}.match.{key}: must be a non-empty string (a glob)")
            if key == "tool" and value != "*" and value not in TOOLS:
                raise PolicyError(f"{here}.match.tool: one of {', '.join(TOOLS)} or \"*\", not {value!r}")
            if key == "act" and not any(fnmatch.fnmatchcase(a, value) for a in ACTS):
                raise PolicyError(f"{here}.match.act: {value!r} names none of the acts {', '.join(ACTS)}")
        rules.append(Rule(dict(match), check_tier(item.get("tier"), f"{here}.tier"),
                          origin=("project" if "project" in match else origin)))
    return tuple(rules)


def roles_from(overrides: Any, where: str = "policy.roles") -> dict[str, Role]:
    roles = dict(BUILTIN_ROLES)
    for name, body in (overrides or {}).items():
        if not isinstance(body, dict):
            raise PolicyError(f"{where}.{name}: a role is {{\"default\": TIER, \"rules\": [...]}}")
        tool_defaults = body.get("toolDefaults") or {}
        if not isinstance(tool_defaults, dict) or set(tool_defaults) - set(TOOLS):
            raise PolicyError(f"{where}.{name}.toolDefaults: keys are {', '.join(TOOLS)}")
        roles[name] = Role(name, check_tier(body.get("default", "blocked"), f"{where}.{name}.default"),
                           parse_rules(body.get("rules"), f"{where}.{name}.rules", "role"),
                           str(body.get("description") or ""),
                           tuple((k, check_tier(v, f"{where}.{name}.toolDefaults.{k}")) for k, v in tool_defaults.items()))
    return roles


def from_document(doc: dict, home: str = "") -> Policy:
    """The policy of a rendered policy.json / the runtime config's {role, policy} (same keys)."""
    policy = doc.get("policy") or {}
    if not isinstance(policy, dict):
        raise PolicyError("policy must be an object")
    roles = roles_from(policy.get("roles"))
    role_name = doc.get("role")
    role = None
    if role_name is not None:
        if role_name not in roles:
            raise PolicyError(f"role: unknown role {role_name!r} (roles: {', '.join(sorted(roles))})")
        role = roles[role_name]
    default = policy.get("default")
    if default is not None:
        check_tier(default, "policy.default")
    return Policy(agent=str(doc.get("agent") or doc.get("agentName") or ""), role=role, default=default,
                  rules=parse_rules(policy.get("rules"), "policy.rules", "agent"), home=home or str(doc.get("home") or ""))


def configured(role: str | None, policy: dict | None) -> bool:
    """Whether an agent has a policy at all (no role and no policy: today's behaviour, no hook)."""
    return bool(role) or bool(policy)


def document(agent: str, role: str | None, policy: dict | None, home: str, coordination: dict | None = None) -> dict:
    """The rendered policy.json (what the hook reads): one object the NixOS module writes the same way."""
    return {"version": 1, "agent": agent, "home": home, "role": role, "policy": policy or {},
            "coordination": coordination or {}}


def load_file(path: str | os.PathLike) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: a policy file is a JSON object")
    return data
