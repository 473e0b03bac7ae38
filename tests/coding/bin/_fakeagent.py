"""Shared body of the stand-in provider CLIs (claude, codex, gemini) used by the coding tests.

Each stand-in parses its real CLI's flags (unknown flags fail as the real ones do), records what it was
given to $FAKE_AGENT_LOG (one JSON object per call), then performs the next scripted action from
$FAKE_AGENT_SCRIPT (a JSON list; the position is kept in <script>.pos):

  {"do": "commit", "files": {"path": "text"}, "message": "..."}   write files and commit them
  {"do": "blocked", "text": "..."}                                write BLOCKED.md (uncommitted)
  {"do": "none"}                                                  change nothing
  {"do": "dirty", "files": {...}}                                 write files, commit nothing
  {"do": "review", "output": "..."}                               print a review
  {"do": "hang", "pid_file": "..."}                               start a child that sleeps, then sleep
  {"do": "switch", "branch": "..."}                               check out another branch (a rule broken)
Any action may carry "stdout" (printed) and "exit" (exit code).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

SECRET_VARS = ("GH_TOKEN", "GITHUB_TOKEN", "GITEA_TOKEN", "FORGEJO_TOKEN", "KEYSTONE_CODING_TOKEN_FILE")


class Usage(Exception):
    pass


def parse(cli: str, argv: list[str]) -> dict:
    """The subset of each CLI's documented grammar the runtime uses; anything else is an error."""
    opts: dict = {"prompt": None, "model": None, "system": None, "flags": []}
    args = list(argv)
    if cli == "codex":
        if not args or args[0] != "exec":
            raise Usage("codex: non-interactive use needs the `exec` subcommand")
        args = args[1:]
    positional_only = False
    while args:
        arg = args.pop(0)
        if arg.startswith("--") and "=" in arg and not positional_only:
            # `--opt=value`: the value is attached (Commander, clap and yargs all read it so)
            arg, value = arg.split("=", 1)
            args.insert(0, value)
            opts.setdefault("attached", []).append(arg)
        if positional_only or (arg == "-" and cli == "codex"):
            if opts["prompt"] is not None:
                raise Usage(f"error: unexpected argument '{arg}'")
            opts["prompt"] = sys.stdin.read() if arg == "-" and not positional_only else arg
            opts["prompt_from"] = "stdin" if arg == "-" and not positional_only else "argv"
        elif arg == "--" and cli in ("claude", "codex"):
            positional_only = True
        elif cli == "claude" and arg in ("--print", "-p", "--dangerously-skip-permissions"):
            opts["flags"].append(arg)
        elif cli == "claude" and arg in ("--append-system-prompt", "--model", "--output-format"):
            if not args:
                raise Usage(f"error: option '{arg}' argument missing")
            value = args.pop(0)
            opts[{"--append-system-prompt": "system", "--model": "model", "--output-format": "format"}[arg]] = value
        elif cli == "codex" and arg in ("--full-auto", "--skip-git-repo-check"):
            opts["flags"].append(arg)
        elif cli == "codex" and arg in ("-m", "--model", "-C", "--cd"):
            if not args:
                raise Usage(f"error: a value is required for '{arg}'")
            value = args.pop(0)
            opts["model" if arg in ("-m", "--model") else "cd"] = value
        elif cli == "gemini" and arg in ("--yolo", "-y"):
            opts["flags"].append("--yolo")
        elif cli == "gemini" and arg in ("--prompt", "-p", "-m", "--model"):
            if not args:
                raise Usage(f"Not enough arguments following: {arg}")
            value = args.pop(0)
            opts["prompt" if arg in ("--prompt", "-p") else "model"] = value
        elif arg.startswith("-"):
            raise Usage(f"error: unknown option '{arg}'")
        elif opts["prompt"] is None:
            opts["prompt"] = arg
        else:
            raise Usage(f"error: unexpected argument '{arg}'")
    if cli == "claude" and "--print" not in opts["flags"] and "-p" not in opts["flags"]:
        raise Usage("claude: without --print the CLI is interactive")
    if cli in ("claude", "gemini") and not sys.stdin.isatty():
        piped = sys.stdin.read()  # claude -p reads the prompt from stdin; gemini appends -p to stdin
        if piped:
            opts["prompt"] = piped + ("\n\n" + opts["prompt"] if opts["prompt"] else "")
            opts["prompt_from"] = "stdin"
    if not opts["prompt"]:
        raise Usage(f"{cli}: no prompt given")
    return opts


def git(*args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Fake Agent", "GIT_AUTHOR_EMAIL": "fake@example.com",
           "GIT_COMMITTER_NAME": "Fake Agent", "GIT_COMMITTER_EMAIL": "fake@example.com"}
    subprocess.run(["git", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def write_files(files: dict) -> None:
    for path, text in files.items():
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


def next_action() -> dict:
    script = os.environ.get("FAKE_AGENT_SCRIPT")
    if not script:
        return {"do": "none"}
    with open(script, encoding="utf-8") as handle:
        actions = json.load(handle)
    pos_file = script + ".pos"
    pos = int(open(pos_file).read()) if os.path.exists(pos_file) else 0
    with open(pos_file, "w") as handle:
        handle.write(str(pos + 1))
    if pos >= len(actions):
        print(f"fake: no scripted action #{pos}", file=sys.stderr)
        sys.exit(3)
    return actions[pos]


def main(cli: str) -> int:
    argv = sys.argv[1:]
    try:
        stdin_target = os.readlink("/proc/self/fd/0")
    except OSError:
        stdin_target = None
    record = {
        "cli": cli, "argv": argv, "cwd": os.getcwd(), "stdin": stdin_target,
        "own_process_group": os.getpgid(0) == os.getpid(),
        "secret_env": [name for name in SECRET_VARS if name in os.environ],
        "claudecode_env": "CLAUDECODE" in os.environ,
    }
    try:
        opts = parse(cli, argv)
    except Usage as exc:
        record["error"] = str(exc)
        opts = None
    if opts is not None:  # how the parser read each argument
        record["parsed"] = {k: v for k, v in opts.items() if k != "prompt"}
    action = next_action() if opts else {}
    record["action"] = action.get("do")
    log = os.environ.get("FAKE_AGENT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    if opts is None:
        print(record["error"], file=sys.stderr)
        return 2
    do = action.get("do", "none")
    if do == "commit":
        write_files(action.get("files", {"change.txt": "changed\n"}))
        git("add", "-A")
        git("commit", "-q", "-m", action.get("message", "Make the change"))
    elif do == "blocked":
        write_files({"BLOCKED.md": action.get("text", "Blocked: need access.\n")})
    elif do == "dirty":
        write_files(action.get("files", {"scratch.txt": "not committed\n"}))
    elif do == "review":
        sys.stdout.write(action["output"])
    elif do == "switch":
        git("checkout", "-q", "-b", action["branch"])
    elif do == "hang":
        child = subprocess.Popen(["sleep", "600"])
        if action.get("pid_file"):
            with open(action["pid_file"], "w") as handle:
                handle.write(str(child.pid))
        time.sleep(600)
    if action.get("stdout"):
        sys.stdout.write(action["stdout"])
    return int(action.get("exit", 0))
