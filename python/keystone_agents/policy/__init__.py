"""Roles, policy tiers and approvals: which of an agent's actions run, are reported, wait for a human, or
are refused (docs/policy.md).

- model.py: tiers, normalized actions, the built-in role catalog, rule matching (the one definition);
- hook.py: `keystone-agent policy check`, the pre-tool hook of claude, codex and gemini (fails closed);
- render.py: the per-CLI settings (claude `--settings`, gemini system settings, codex `-c hooks…`);
- outcome.py: what the hook decided during a run, as the execute stage reads it afterwards.
"""
