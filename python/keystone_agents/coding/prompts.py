"""The prompts the coding subagent is given: the system prompt with the seven rules, the task prompt, the
fix prompt after a failed review, and the review prompt asking for COMMENT blocks and a VERDICT."""

from __future__ import annotations

from dataclasses import dataclass

from keystone_agents.sanitize import command_line

# A prompt travels in argv; one argument may not exceed 128 KiB on Linux. The diff is cut well below that
# and the reviewer is told how to read the rest itself.
DIFF_LIMIT = 60_000

TASK_PROMPT = (
    "Read the task in your system prompt. Implement the required changes. Make focused commits as you go. "
    "When you are done, make sure everything is committed."
)


@dataclass(frozen=True)
class GitContext:
    repo: str
    forge: str
    default_branch: str
    branch: str
    base_commit: str


def rules(branch: str) -> list[str]:
    return [
        "Commit your work as you go: small, focused commits with messages that say what and why. "
        "Only committed work counts; uncommitted changes are not delivered.",
        "Run the project's tests and linters (where they exist) before you commit, and fix what you broke.",
        "Do not push, do not open or edit pull requests, do not call the forge's API: the orchestrator does that.",
        f"Do not switch, create, rename or delete branches, and do not rewrite existing history: stay on `{branch}`.",
        "Read AGENTS.md, CLAUDE.md and CONTRIBUTING.md (where present) first and follow the repository's conventions.",
        "Make only the changes the task needs: no unrelated refactoring, reformatting or dependency bumps.",
        "If you cannot do the task (missing access, unclear requirements, a decision only a human can make), "
        "write BLOCKED.md at the repository root saying why and what you need, and stop.",
    ]


def system_prompt(task: str, context: GitContext) -> str:
    numbered = "\n".join(f"{i}. {rule}" for i, rule in enumerate(rules(context.branch), 1))
    return f"""You are a coding subagent working in a git repository.

## Task

{task.strip()}

## Git context

- Repository: {context.repo} ({context.forge})
- Default branch: {context.default_branch}
- Your branch: {context.branch} (already checked out, created from {context.base_commit[:12]})

## Rules

{numbered}
"""


def fix_prompt(task: str, cycle: int, comments_text: str) -> str:
    return f"""A reviewer looked at your commits for this task and asked for changes (review cycle {cycle}).

Task: {task.strip()}

Review comments:

{comments_text.strip() or "(no specific comments; the reviewer's verdict was FAIL)"}

Address every comment on the same branch, with new commits (do not amend or rebase). If a comment is wrong,
leave the code as it is and say why in a commit message. Make sure everything is committed when you are done.
"""


REVIEW_SYSTEM_PROMPT = """You are a meticulous code reviewer. Review the change below against its task.
Do not modify any file and do not commit: only read and report.

Report every problem as a block:

COMMENT: path/to/file:LINE
What is wrong and what to do instead.
END_COMMENT

LINE is the line number in the new version of the file. Then end your answer with exactly one line:

VERDICT: PASS
or
VERDICT: FAIL

PASS means the change does the task correctly and can be merged (minor comments are allowed);
FAIL means it must be fixed first.
"""


def review_prompt(task: str, branch: str, default_branch: str, log: str, diff: str) -> str:
    if len(diff) > DIFF_LIMIT:
        cut = diff[:DIFF_LIMIT]
        diff = cut + (
            f"\n\n[diff truncated at {DIFF_LIMIT} characters; run "
            f"`{command_line(['git', 'diff', f'{default_branch}...{branch}'])}` "
            "for the rest]\n"
        )
    return f"""Task: {task.strip()}

Branch `{branch}` against `{default_branch}`.

## Commits

{log.strip() or "(none)"}

## Diff

```diff
{diff.rstrip()}
```
"""
