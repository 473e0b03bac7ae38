"""The coding subagent: the orchestrator owns git and the forge; a provider CLI only makes commits.

Modules: `repo` (git), `credential` (git credential helper reading the token file), `providers` (claude,
codex, gemini), `prompts`, `review` (parsing the reviewer's output), `forge` (common types and choice of
adapter), `forge_github` (via `gh`), `forge_forgejo` (REST API), `orchestrator` (the whole run).
"""
