#!/usr/bin/env python3
"""Recording stand-in for the programs agentctl runs (sudo, the per-agent helper, systemctl, journalctl,
remote-viewer, himalaya, claude, codex, gemini, keystone-agent). Each call appends one JSON line
{"prog", "argv"} to $AGENTCTL_TEST_LOG, then behaves as documented below so that agentctl's flows work:

  sudo -u USER -- CMD…        runs CMD… (as the same user: the tests cannot switch users)
  agent-helper VERB ARGS…     the expansion of keystone_agents.agentctl.verbs (the allow-list the real helper,
                              keystone-agent-svc, uses) for the agent whose user sudo was asked for; the real
                              helper through real sudo is tested in tests/realhost
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
    rest = argv[1:] if argv[0] == "-n" else argv
    if rest[0] == "--":  # sudo -n -- systemctl VERB UNIT (an agent's system unit)
        os.execvp(rest[1], rest[1:])
    assert rest[0] == "-u" and rest[2] == "--", argv
    os.environ["AGENTCTL_TEST_SUDO_USER"] = rest[1]
    os.execvp(rest[3], rest[3:])
elif prog == "agent-helper":
    from keystone_agents.agentctl import hostconfig, verbs

    config = hostconfig.load(os.environ["AGENTCTL_CONFIG"])
    agent = next(a for a in config.agents if a.user == os.environ["AGENTCTL_TEST_SUDO_USER"])
    try:
        command = verbs.expand(argv[0], agent, argv[1:])
    except verbs.Refused as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    os.execvp(command[0], command)
elif prog == "systemctl":
    if "show" in argv and "--property=NextElapseUSecRealtime" in argv:
        print("@1767225600")
elif prog == "keystone-agent":
    if argv and argv[0] not in ("runs", "logs", "loop"):
        real = os.environ["AGENTCTL_TEST_REAL_KEYSTONE_AGENT"]
        os.execv(real, [real, *argv])
sys.exit(0)
