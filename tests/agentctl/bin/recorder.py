#!/usr/bin/env python3
"""Recording stand-in for the programs agentctl runs (sudo, the per-agent helper, systemctl, journalctl,
remote-viewer, himalaya, claude, codex, gemini, keystone-agent). Each call appends one JSON line
{"prog", "argv"} to $AGENTCTL_TEST_LOG, then behaves as documented below so that agentctl's flows work:

  sudo -u USER -- CMD…        runs CMD… (as the same user: the tests cannot switch users)
  agent-helper VERB ARGS…     systemctl --user VERB ARGS | journalctl --user ARGS | exec CMD ARGS
  systemctl … show … --property=NextElapseUSecRealtime --value   prints "@1767225600"
  keystone-agent SUB …        runs the real keystone-agent for the subcommands this branch has; records only
                              for those of the task loop (runs, logs, loop), whose behaviour is not under test
"""
import json
import os
import sys

prog = os.path.basename(sys.argv[0])
argv = sys.argv[1:]
log = os.environ.get("AGENTCTL_TEST_LOG")
if log:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"prog": prog, "argv": argv}) + "\n")

if prog == "sudo":
    assert argv[0] == "-u" and argv[2] == "--", argv
    os.execvp(argv[3], argv[3:])
elif prog == "agent-helper":
    verb, rest = argv[0], argv[1:]
    if verb == "exec":
        os.execvp(rest[0], rest)
    elif verb == "journalctl":
        os.execvp("journalctl", ["journalctl", "--user", *rest])
    else:
        os.execvp("systemctl", ["systemctl", "--user", verb, *rest])
elif prog == "systemctl":
    if "show" in argv and "--property=NextElapseUSecRealtime" in argv:
        print("@1767225600")
elif prog == "keystone-agent":
    if argv and argv[0] not in ("runs", "logs", "loop"):
        real = os.environ["AGENTCTL_TEST_REAL_KEYSTONE_AGENT"]
        os.execv(real, [real, *argv])
sys.exit(0)
