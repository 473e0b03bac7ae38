"""Shared behaviour of the stand-in provider CLIs (claude, gemini, codex, fake-llm).

They record every invocation (argv, task, stdin) as JSON lines in $FAKE_BIN_LOG, and act on directives
written in the prompt (so one loop run can hold tasks that behave differently):
  [fake:sleep=N]            sleep N seconds before answering
  [fake:sleep-first=N]      sleep N seconds only the first time this task is invoked
  [fake:ignore-term]        ignore SIGTERM, then sleep for a long time
  [fake:exit=N]             exit with status N (after printing a failure)
  [fake:report=completed]   write {"status": "completed", ...} to $KEYSTONE_TASK_RESULT
  [fake:report=blocked]     write {"status": "blocked", "blocked_reason": "needs a human", ...}
  [fake:pr=URL]             mention URL in the answer (as a created pull request)
  [fake:hang]               print nothing and sleep for an hour (a hung CLI)
  [fake:read-stdin]         read stdin to EOF before answering (blocks forever on an open stdin)
  [fake:empty]              exit 0 printing nothing at all
  [fake:transcript=N]       for N seconds print nothing but append to the CLI's transcript file
  [fake:turns=N]            report N agentic turns (claude's num_turns), whatever --max-turns said
  [fake:cost=X]             report a cost of X dollars (claude's total_cost_usd)
  [fake:output-tokens=N]    report N output tokens
  [fake:set-status=S]       set this task's status to S in TASKS.yaml ($HOME/TASKS.yaml), with a blocked_reason
                            for blocked (as an agent that edits its own queue)
  [fake:drop-others]        remove every other task from TASKS.yaml
  [fake:add-task]           append a task `follow-up-by-agent` to TASKS.yaml
  [fake:commit]             write WORK.md in the working directory and `git commit` it
  [fake:break-tasks]        overwrite TASKS.yaml with `tasks: [unclosed` (a provider that breaks the queue)
  [fake:delivery-failed=K]  the report lists a failed delivery of kind K (and a successful pull request)
  [fake:tools=N]            make N tool calls, each printed as the CLI's stream event (with --output-format
                            stream-json / --json), $FAKE_TOOL_SECONDS (0.3) apart; each one that ran is recorded
  [fake:report=continue]    report "continue" (autonomous mode) every turn of the session
  [fake:continue=K]         report "continue" for the first K turns of the session, then "completed"
Sessions: a run prints a session id (claude/gemini session_id, codex thread_id); a run that resumes one
(claude --resume ID, codex exec resume ID, gemini --resume ID) continues that session: its directives are the
first prompt's (the CLI keeps the context), whatever the continuation prompt says. Sessions are kept next to
$FAKE_BIN_LOG (without it, every run is a session of its own). A resumed session whose prompt asks for no tool
call retries the calls a hook refused earlier in that session (a model told its action was approved retries it).
With $FAKE_RUN_COMMANDS set, the stand-in behaves like a model that does what it is told: every command line the
prompt shows (a line that is, or ends in after a "Label: " prefix, `keystone-agent …` or `agentctl …`) is run in a
real shell (`bash -c LINE`, stdin: a short reply body), and recorded as an `ran-command` event with its exit code.
A triage prompt ("You triage incoming items...") is answered with the triage JSON, unless the item holds
[fake:not-actionable] (actionable: false) or [fake:bad-triage] (an answer that is not JSON).
Models named in $FAKE_BAD_MODELS (comma-separated) fail with the CLI's model-not-found error.
"""

import json
import os
import re
import signal
import sys
import time


def record(tool, argv, **extra):
    path = os.environ.get("FAKE_BIN_LOG")
    if not path:
        return
    line = json.dumps({"tool": tool, "argv": argv, "pid": os.getpid(), "task": os.environ.get("KEYSTONE_TASK_NAME"),
                       "result_env": os.environ.get("KEYSTONE_TASK_RESULT"), "time": time.time(), "cwd": os.getcwd(),
                       **extra})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def invocations(task):
    """How many invocations of `task` the log holds (this one included)."""
    path = os.environ.get("FAKE_BIN_LOG")
    if not path or not os.path.exists(path):
        return 0
    with open(path) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return sum(1 for r in rows if r.get("task") == task and not r.get("event"))


def directives(prompt):
    return dict(re.findall(r"\[fake:([a-z-]+)(?:=([^\]]*))?\]", prompt or ""))


def bad_model(model):
    return bool(model) and model in [m for m in os.environ.get("FAKE_BAD_MODELS", "").split(",") if m]


COMMAND_LINE = re.compile(r"^(?:[A-Za-z][^:\n]{0,80}:\s+|\$\s+)?((?:keystone-agent|agentctl)\s.*)$", re.M)


def command_lines(prompt):
    return [m.group(1).strip() for m in COMMAND_LINE.finditer(prompt or "")]


def run_commands(tool, prompt):
    """Run every command line the prompt shows in a real shell, as a model following it would."""
    import subprocess

    for line in command_lines(prompt):
        proc = subprocess.run(["bash", "-c", line], input="Automated answer from the stand-in model.\n",
                              capture_output=True, text=True, timeout=120)
        record(tool, [], event="ran-command", line=line, exit_code=proc.returncode,
               stdout=proc.stdout[-2000:], stderr=proc.stderr[-2000:])


def behave(tool, prompt, turn=0):
    """Sleep / ignore SIGTERM / write the report as the prompt asks; returns (exit code, answer text)."""
    if os.environ.get("FAKE_RUN_COMMANDS"):
        run_commands(tool, prompt)
    d = directives(prompt)
    if "read-stdin" in d:
        record(tool, [], event="reading-stdin")
        sys.stdin.read()
        record(tool, [], event="stdin-eof")
    if "hang" in d:
        record(tool, [], event="hanging")
        time.sleep(3600)
    if "transcript" in d:
        end = time.time() + float(d["transcript"])
        path = transcript_path(tool)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        while time.time() < end:
            with open(path, "a") as handle:
                handle.write(json.dumps({"type": "assistant", "time": time.time()}) + "\n")
            time.sleep(0.2)
    if "ignore-term" in d:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        record(tool, [], event="ignoring-sigterm")
        time.sleep(3600)
    if "sleep" in d:
        time.sleep(float(d["sleep"]))
    if "sleep-first" in d and invocations(os.environ.get("KEYSTONE_TASK_NAME")) <= 1:
        time.sleep(float(d["sleep-first"]))
    answer = "Done: " + (prompt or "").splitlines()[-1][:80]
    if (prompt or "").startswith("You triage incoming items"):
        if "[fake:not-actionable]" in prompt:
            answer = json.dumps({"actionable": False, "name": "x", "description": "x", "project": None})
        elif "[fake:bad-triage]" in prompt:
            answer = "I think this is actionable!"
        else:
            answer = json.dumps({"actionable": True, "name": "Triaged Request", "description": "Triaged: reply to it",
                                 "project": "main"})
    if "pr" in d:
        answer += f"\nCreated pull request {d['pr']}"
    if "empty" in d:
        answer = ""
    tasks_file = os.path.join(os.environ.get("HOME", "/nonexistent"), "TASKS.yaml")
    if "set-status" in d:
        import yaml

        with open(tasks_file) as handle:
            data = yaml.safe_load(handle)
        for task in data["tasks"]:
            if task.get("name") == os.environ.get("KEYSTONE_TASK_NAME"):
                task["status"] = d["set-status"]
                if d["set-status"] == "blocked":
                    task["blocked_reason"] = "the agent needs a decision from a human"
        with open(tasks_file, "w") as handle:
            yaml.safe_dump(data, handle, sort_keys=False)
    if "drop-others" in d or "add-task" in d:
        import yaml

        with open(tasks_file) as handle:
            data = yaml.safe_load(handle)
        if "drop-others" in d:
            data["tasks"] = [t for t in data["tasks"] if t.get("name") == os.environ.get("KEYSTONE_TASK_NAME")]
        else:
            data["tasks"].append({"name": "follow-up-by-agent", "description": "noted by the agent", "status": "pending"})
        with open(tasks_file, "w") as handle:
            yaml.safe_dump(data, handle, sort_keys=False)
    if "commit" in d:  # commit everything in the working directory, as an agent does (identity from git's config)
        import subprocess

        (open(os.path.join(os.getcwd(), "WORK.md"), "a")).write("work done\n")
        subprocess.run(["git", "add", "-A"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["git", "commit", "-q", "-m", "Work by the agent"], check=True, stdout=subprocess.DEVNULL)
    if "break-tasks" in d:
        with open(tasks_file, "w") as handle:
            handle.write("tasks: [unclosed\n")
    report = d.get("report")
    if "continue" in d or report == "continue":
        report = continuation_report(prompt, turn)
    if report and os.environ.get("KEYSTONE_TASK_RESULT"):
        body = {"status": report, "message": f"agent says {report}", "pull_requests_created": [], "issues_created": []}
        if report == "blocked":
            body["blocked_reason"] = "needs a human"
        if "delivery-failed" in d:
            body["deliveries"] = [
                {"kind": d["delivery-failed"], "target": "alice@example.com", "ok": False, "error": "550 mailbox unavailable"},
                {"kind": "pull_request", "target": "https://forge.example/o/r/pulls/7", "ok": True},
            ]
        with open(os.environ["KEYSTONE_TASK_RESULT"], "w") as handle:
            json.dump(body, handle)
    code = int(d.get("exit", 0) or 0)
    return code, answer


def finish(tool, code):
    record(tool, [], event="finished", exit_code=code)
    sys.exit(code)


def transcript_path(tool):
    """Where the real CLI keeps the session transcript it appends to while it works."""
    home = os.environ.get("HOME", "/nonexistent")
    if tool == "claude":
        return os.path.join(home, ".claude", "projects", re.sub(r"[^A-Za-z0-9]", "-", os.getcwd()),
                            f"session-{os.getpid()}.jsonl")
    if tool == "codex":
        return os.path.join(home, ".codex", "sessions", time.strftime("%Y/%m/%d"), f"rollout-{os.getpid()}.jsonl")
    return os.path.join(home, f".{tool}-transcript-{os.getpid()}.jsonl")


def session(tool, resume_id, prompt):
    """(session id, the prompt whose directives apply, turn number 0…) of this run; a resumed session keeps the
    first prompt, as the real CLIs keep the conversation. Unknown ids fail like the CLIs do (exit 1)."""
    import uuid

    if not os.environ.get("FAKE_BIN_LOG"):  # nowhere to keep sessions: each run is its own session
        return resume_id or str(uuid.uuid4()), prompt or "", 0
    base = os.environ["FAKE_BIN_LOG"] + ".sessions"
    os.makedirs(base, exist_ok=True)
    if resume_id:
        path = os.path.join(base, f"{tool}-{os.path.basename(resume_id)}.json")
        if not os.path.exists(path):
            print(f"No conversation found with session ID: {resume_id}", file=sys.stderr)
            finish(tool, 1)
        with open(path) as handle:
            state = json.load(handle)
        state["turn"] += 1
        record(tool, [], event="resumed", session_id=resume_id, turn=state["turn"], prompt=prompt)
    else:
        state = {"id": str(uuid.uuid4()), "prompt": prompt or "", "turn": 0}
        path = os.path.join(base, f"{tool}-{state['id']}.json")
    with open(path, "w") as handle:
        json.dump(state, handle)
    _SESSION.update(path=path, state=state)
    return state["id"], state["prompt"], state["turn"]


_SESSION = {}  # this run's session file and state (session() fills it in when sessions are kept)


def continuation_report(prompt, turn):
    """The report status this turn of a session writes: directives report=continue / continue=K."""
    d = directives(prompt)
    if d.get("report") == "continue":
        return "continue"
    if "continue" in d:
        return "continue" if turn < int(d["continue"]) else "completed"
    return d.get("report")


def tool_calls(tool, prompt, emit, done=None):
    """Make the [fake:tools=N] tool calls: emit(n) prints the CLI's request for call n, the call "runs" (it is
    recorded), then done(n) prints its result."""
    count = int(directives(prompt).get("tools") or 0)
    pause = float(os.environ.get("FAKE_TOOL_SECONDS", "0.3"))
    for n in range(1, count + 1):
        emit(n)
        time.sleep(pause)
        record(tool, [], event="tool-ran", n=n)
        if done:
            done(n)


# ---------------------------------------------------------------- tool calls behind the CLIs' pre-tool hooks
#   [fake:bash=COMMAND]       call the shell tool with COMMAND (claude Bash, codex Bash, gemini run_shell_command)
#   [fake:write=PATH]         call the file-write tool on PATH (claude Write, codex apply_patch, gemini write_file)
# Before each call the stand-in runs the pre-tool hooks its settings configure, exactly as the real CLI does
# (hook input JSON on stdin, a shell command, the documented exit codes and decision fields): a refused call
# never runs. Every call is recorded as a `tool-call` event {name, input, allowed, reason}.

TOOL_CALL = re.compile(r"\[fake:(bash|write)=([^\]]*)\]")


def hooked_tool_calls(prompt):
    return TOOL_CALL.findall(prompt or "")


def run_hook(command, payload, timeout=120):
    """One command hook: `sh -c COMMAND`, the input JSON on stdin → (exit code, stdout, stderr)."""
    import subprocess

    try:
        proc = subprocess.run(["sh", "-c", command], input=json.dumps(payload), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", "hook timed out"
    return proc.returncode, proc.stdout, proc.stderr


def matcher_matches(matcher, tool_name):
    if matcher in (None, "", "*"):
        return True
    try:
        return re.fullmatch(matcher, tool_name) is not None
    except re.error:
        return matcher == tool_name


def execute_tool(kind, arg):
    """What the tool does once allowed: run the command in bash, or write the file."""
    import subprocess

    if kind == "bash":
        proc = subprocess.run(["bash", "-c", arg], capture_output=True, text=True, timeout=120)
        return f"exit {proc.returncode}: {proc.stdout[-500:]}{proc.stderr[-500:]}"
    with open(arg, "w") as handle:
        handle.write("written by the stand-in model\n")
    return f"wrote {arg}"


def perform_tool_calls(cli, prompt, gate, spec):
    """Run the prompt's tool calls through `gate(tool_name, tool_input) -> (allowed, reason)`; → text the model
    saw (one line per call). `spec(kind, arg) -> (tool_name, tool_input)` names the CLI's own tool."""
    seen = []
    calls = hooked_tool_calls(prompt)
    state = _SESSION.get("state")
    if not calls and state and state.get("turn"):  # resumed: retry what was refused earlier in the session
        calls = [tuple(c) for c in state.get("refused") or []]
    refused = []
    for kind, arg in calls:
        name, tool_input = spec(kind, arg)
        allowed, reason = gate(name, tool_input)
        result = execute_tool(kind, arg) if allowed else ""
        record(cli, [], event="tool-call", name=name, input=tool_input, allowed=allowed, reason=reason,
               result=result[:300])
        seen.append(f"{name}: {'ran' if allowed else 'refused'}: {reason or result}"[:500])
        if not allowed:
            refused.append([kind, arg])
    if state is not None:
        state["refused"] = refused
        with open(_SESSION["path"], "w") as handle:
            json.dump(state, handle)
    return "\n".join(seen)
