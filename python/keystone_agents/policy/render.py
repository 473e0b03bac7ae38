"""The files the provider CLIs read, rendered from one policy (root-owned on a host: `policy render`, NixOS).

- policy.json            what the hook reads (model.document): agent, home, role, policy, coordination;
- claude-settings.json   `claude --settings FILE`: a PreToolUse hook on every tool ("*") running `policy check`,
                         `permissions.defaultMode: dontAsk` with the tools the hook governs allowed, and the
                         blocked patterns as deny rules (deny rules and a hook's deny hold in every mode);
- gemini-settings.json   GEMINI_CLI_SYSTEM_SETTINGS_PATH (the system settings layer, which overrides the user's
                         and the project's): a BeforeTool hook on every tool (".*") running `policy check`;
- codex: `codex exec -c hooks.PreToolUse=[…]` built by `codex_overrides` (codex has no settings-file flag; the
  runtime reads the hook command from policy.json, which the agent cannot edit).

Every hook command ends in `|| exit 2`: if keystone-agent itself cannot start (a broken install, a missing
interpreter) the CLI still sees the documented "block" exit code, never claude's fail-open exit 1.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from keystone_agents.policy import model

POLICY = "policy.json"
CLAUDE = "claude-settings.json"
GEMINI = "gemini-settings.json"
HOOK_TIMEOUT_SECONDS = 120  # approvals and audit entries go over the bus
CLAUDE_TOOLS = ("Bash", "Read", "Edit", "Write", "MultiEdit", "NotebookEdit", "Glob", "Grep", "LS", "WebFetch",
                "WebSearch", "TodoWrite", "Task")


def hook_command(cli: str, policy_file: str | os.PathLike, program: str = "keystone-agent") -> str:
    return (f"{shlex.quote(program)} policy check --cli {cli} --policy {shlex.quote(str(policy_file))}"
            " || exit 2")


def _claude_pattern(rule: model.Rule) -> str | None:
    """A blocked rule as a Claude permission rule (only what maps one to one; the hook decides the rest)."""
    match = rule.match
    if set(match) - {"shell", "write", "read", "fetch"} or len(match) != 1:
        return None
    key, value = next(iter(match.items()))
    if key == "shell":
        return f"Bash({value})"
    if key == "fetch":
        return f"WebFetch(domain:{value})" if "*" not in value.replace("*.", "", 1) else None
    path = value
    if path.startswith("/"):
        path = "/" + path  # "//abs/path": absolute from the filesystem root in Claude's rule syntax
    return f"{'Read' if key == 'read' else 'Edit'}({path})"


def claude_settings(policy: model.Policy, policy_file: str | os.PathLike, program: str = "keystone-agent",
                    mcp_servers: list[str] | tuple[str, ...] = ("keystone",)) -> dict:
    deny = []
    for rule in policy.all_rules(None):
        if rule.tier == "blocked":
            pattern = _claude_pattern(rule)
            if pattern and pattern not in deny:
                deny.append(pattern)
                if pattern.startswith("Edit("):
                    deny.append("Write" + pattern[4:])
    return {
        "permissions": {"defaultMode": "dontAsk",
                        "allow": list(CLAUDE_TOOLS) + [f"mcp__{name}" for name in mcp_servers],
                        "deny": deny},
        "hooks": {"PreToolUse": [{"matcher": "*", "hooks": [
            {"type": "command", "command": hook_command("claude", policy_file, program),
             "timeout": HOOK_TIMEOUT_SECONDS}]}]},
        "disableAllHooks": False,
    }


def gemini_settings(policy_file: str | os.PathLike, program: str = "keystone-agent") -> dict:
    return {
        "hooksConfig": {"enabled": True},
        "hooks": {"BeforeTool": [{"matcher": ".*", "sequential": True, "hooks": [
            {"type": "command", "name": "keystone-policy", "command": hook_command("gemini", policy_file, program),
             "timeout": HOOK_TIMEOUT_SECONDS * 1000}]}]},
    }


def codex_overrides(policy_file: str | os.PathLike, program: str = "keystone-agent") -> list[str]:
    """`-c` overrides of `codex exec`: the PreToolUse hook (codex ≥ 0.124 runs hooks by default; the feature
    flag is set for the releases before it)."""
    command = hook_command("codex", policy_file, program)
    hooks = ('[{matcher = ".*", hooks = [{type = "command", command = ' + json.dumps(command)
             + f", timeout = {HOOK_TIMEOUT_SECONDS}" + "}]}]")
    return [f"--config=features.codex_hooks=true", f"--config=hooks.PreToolUse={hooks}"]


def policy_document(config, home: str) -> dict:
    from dataclasses import asdict

    coordination = asdict(config.coordination)
    host_shape = {"backend": coordination["backend"],
                  "local": {"socket": coordination["local"]["socket"], "wakeDir": coordination["local"]["wake_dir"]},
                  "postgresql": {k: v for k, v in coordination["postgresql"].items() if v is not None}}
    return model.document(config.agent_name, config.role, config.policy, home, host_shape)


def write_all(out_dir: Path, config, home: str, program: str = "keystone-agent") -> list[Path]:
    """policy.json, claude-settings.json and gemini-settings.json in out_dir, mode 0444 (the directory 0755):
    run as root, the agent can read them and change none."""
    doc = policy_document(config, home)
    doc["mcpServers"] = ["keystone", *sorted(config.mcp_servers)]
    return _write(out_dir, doc, out_dir / POLICY, program, with_policy=True)


def write_settings(out_dir: Path, doc: dict, policy_path: str | os.PathLike, program: str = "keystone-agent") -> list[Path]:
    """The CLI settings of a policy.json written elsewhere (the NixOS module writes policy.json itself)."""
    return _write(out_dir, doc, policy_path, program, with_policy=False)


def _write(out_dir: Path, doc: dict, policy_file, program: str, with_policy: bool) -> list[Path]:
    home = str(doc.get("home") or "")
    policy = model.from_document(doc, home=home)  # refuses an invalid policy before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o755)
    servers = doc.get("mcpServers") or ["keystone"]
    files = {CLAUDE: claude_settings(policy, policy_file, program, servers), GEMINI: gemini_settings(policy_file, program)}
    if with_policy:
        files = {POLICY: doc, **files}
    written = []
    for name, data in files.items():
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
        written.append(path)
    return written


def write_run(run_dir: Path, config, home: str, program: str = "keystone-agent") -> Path:
    """For an agent with a policy but no rendered policyFile: the same files in a per-run directory (the
    agent owns it: `validate` warns that such a policy is a seatbelt, not a wall). → the policy.json path."""
    write_all(run_dir, config, home, program)
    return run_dir / POLICY
