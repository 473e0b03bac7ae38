"""The runtime's own consequential acts under the agent's policy: what no CLI hook sees (the coding subagent's
push and pull request, made by the orchestrator itself, not by a tool call of the model).

The execute stage passes the policy to the run's environment (KEYSTONE_POLICY_FILE, KEYSTONE_POLICY_LOG, the
task's name): an act is decided exactly as the hook decides a tool call (model.py), audited and approved the
same way (hook.Checker), and recorded in the same decision log, so an act waiting for approval blocks the task
with `approval:<id>`. Without a policy in the environment every act is allowed (today's behaviour). Fails
closed: an error refuses the act.
"""

from __future__ import annotations

import os

from keystone_agents.policy import hook
from keystone_agents.policy.model import ACTS, Action

POLICY_ENV = "KEYSTONE_POLICY_FILE"


def check(act: str, detail: str = "") -> tuple[bool, str]:
    """(allowed, reason) of one act (one of model.ACTS) of this run."""
    if act not in ACTS:
        raise ValueError(f"unknown act {act!r} (acts: {', '.join(ACTS)})")
    policy_file = os.environ.get(POLICY_ENV)
    if not policy_file:
        return True, ""
    checker = None
    try:
        policy, coordination = hook.load_policy(policy_file, None)
        checker = hook.Checker(policy, hook.bus_factory_for(coordination), os.environ.get(hook.LOG_ENV),
                               os.environ.get("KEYSTONE_TASK_NAME"), os.environ.get("KEYSTONE_RUN_ID"),
                               os.environ.get(hook.PROJECT_ENV))
        return checker._one("runtime", Action("act", act, "runtime", {"detail": detail[:2000]}))
    except Exception as exc:  # noqa: BLE001 - fail closed
        return False, f"the policy check of {act} failed ({type(exc).__name__}: {exc}); refused"
    finally:
        if checker is not None:
            checker.close()
