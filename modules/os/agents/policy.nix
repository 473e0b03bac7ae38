# Roles and policy tiers (docs/policy.md): for each agent with a role or policy, the rendered policy.json and the
# provider CLIs' settings under /etc/keystone-agents/agents/<name>/, root-owned and read-only (0444): the agent
# reads them and changes none. policy.json has the shape of keystone_agents.policy.model.document; the CLI
# settings are rendered from it by `keystone-agent policy render --from-policy` (the one renderer).
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg localNames;
  inherit (lib) mkIf listToAttrs nameValuePair concatMap filter;
  rt = config.keystone.os.agentRuntime;

  hasPolicy = name: cfg.${name}.role != null || cfg.${name}.policy.rules != [ ]
    || cfg.${name}.policy.default != null || cfg.${name}.policy.roles != { };
  withPolicy = filter hasPolicy localNames;
  dir = name: "keystone-agents/agents/${name}";

  policyBody = name:
    let p = cfg.${name}.policy; in
    lib.filterAttrs (_: v: v != null) {
      inherit (p) rules roles;
      default = p.default;
    };

  document = name: {
    version = 1;
    agent = name;
    home = L.homeOf name;
    role = cfg.${name}.role;
    policy = policyBody name;
    coordination = L.coordinationOf;
    mcpServers = [ "keystone" ] ++ lib.attrNames cfg.${name}.mcp.servers;
  };
  policyText = name: builtins.toJSON (document name);

  settings = name: pkgs.runCommand "keystone-agent-policy-${name}" { } ''
    ${L.bin} policy render --from-policy ${pkgs.writeText "policy-${name}.json" (policyText name)} \
      --policy-path ${L.policyPath name} --keystone-agent ${L.bin} --out $out
  '';

  approvalTiers = name:
    let p = cfg.${name}.policy; in
    builtins.any (r: r.tier == "approval_required") (p.rules ++ concatMap (r: r.rules) (lib.attrValues p.roles))
    || p.default == "approval_required";
in
{
  config = mkIf (withPolicy != [ ]) {
    environment.etc = listToAttrs (concatMap (name: [
      (nameValuePair "${dir name}/policy.json" { text = policyText name; mode = "0444"; user = "root"; group = "root"; uid = 0; gid = 0; })
      (nameValuePair "${dir name}/claude-settings.json" { source = "${settings name}/claude-settings.json"; mode = "0444"; user = "root"; group = "root"; uid = 0; gid = 0; })
      (nameValuePair "${dir name}/gemini-settings.json" { source = "${settings name}/gemini-settings.json"; mode = "0444"; user = "root"; group = "root"; uid = 0; gid = 0; })
    ]) withPolicy);

    assertions = map (name: {
      assertion = !(approvalTiers name || cfg.${name}.role == "researcher")
        || rt.coordination.backend != "none";
      message = "keystone.os.agents.${name}.policy: approval_required needs a coordination backend (approvals wait on the bus; the researcher role asks approval for shell commands); set keystone.os.agentRuntime.coordination.backend = \"local\" (or \"postgresql\"), or use \"blocked\" instead.";
    }) withPolicy
    ++ map (name: {
      assertion = cfg.${name}.role == null
        || builtins.elem cfg.${name}.role ([ "researcher" "coder" "reviewer" "planner" "overseer" ] ++ lib.attrNames cfg.${name}.policy.roles);
      message = "keystone.os.agents.${name}.role: unknown role \"${toString cfg.${name}.role}\"; use researcher, coder, reviewer, planner, overseer or one defined in keystone.os.agents.${name}.policy.roles.";
    }) withPolicy;
  };
}
