"""The module's policy part: keystone.os.agents.<name>.role and .policy render a root-owned, read-only policy.json
(and the CLI settings) under /etc/keystone-agents/agents/<name>/, which the runtime's policy model reads as
it is; the runtime config names it (policyFile); approval_required without a bus is an assertion."""

from __future__ import annotations

import json

from keystone_agents.policy import model
from tests.nix.test_nix_module import valid_agent_config

SCENARIO = '''{
  networking.hostName = "ocean";
  keystone.os.agentRuntime = { admins = [ "alice" ]; coordination.backend = "local"; };
  keystone.os.agents.drago = {
    role = "coder";
    policy = {
      default = "notify";
      rules = [
        { match = { shell = "terraform apply*"; }; tier = "approval_required"; }
        { match = { write = "/srv/**"; project = "prod-*"; }; tier = "blocked"; }
      ];
    };
  };
  keystone.os.agents.luce = { };
}'''


def test_role_and_policy_render_a_root_owned_policy(evaluate):
    ev = evaluate(SCENARIO)
    assert ev["failedAssertions"] == []
    entry = ev["etc"]["keystone-agents/agents/drago/policy.json"]
    assert entry["mode"] == "0444" and entry["user"] == "root" and entry["group"] == "root"
    doc = json.loads(entry["text"])
    assert doc["agent"] == "drago" and doc["role"] == "coder" and doc["home"] == "/home/agent-drago"
    assert doc["coordination"]["backend"] == "local"
    policy = model.from_document(doc, home=doc["home"])  # the runtime reads what Nix wrote
    assert policy.decide(model.Action("shell", "terraform apply -auto-approve")).tier == "approval_required"
    assert policy.decide(model.Action("file.write", "/srv/x"), "prod-eu").tier == "blocked"
    assert policy.decide(model.Action("shell", "sudo id")).tier == "blocked"  # the coder role's floor
    assert policy.decide(model.Action("shell", "make")).tier == "notify"  # policy.default
    for name in ("claude-settings.json", "gemini-settings.json"):
        settings = ev["etc"][f"keystone-agents/agents/drago/{name}"]
        assert settings["mode"] == "0444" and settings["user"] == "root"
        assert ev["etcSources"][f"keystone-agents/agents/drago/{name}"].endswith(f"keystone-agent-policy-drago/{name}")
    # the runtime configuration names the root-owned file; an agent without a policy has none
    config = valid_agent_config(ev, "drago")
    assert config["policyFile"] == "/etc/keystone-agents/agents/drago/policy.json" and config["role"] == "coder"
    assert "policyFile" not in valid_agent_config(ev, "luce")
    assert not any(k.startswith("keystone-agents/agents/luce/") for k in ev["etc"])


def test_approval_required_without_a_bus_and_unknown_roles_are_assertions(evaluate):
    ev = evaluate('''{
      keystone.os.agents.drago.policy.rules = [ { match = { act = "mail.send"; }; tier = "approval_required"; } ];
      keystone.os.agents.luce.role = "wizard";
    }''')
    failed = "\n".join(ev["failedAssertions"])
    assert "keystone.os.agents.drago.policy: approval_required needs a coordination backend" in failed
    assert 'keystone.os.agents.luce.role: unknown role "wizard"' in failed
