# The sudo rules agentctl needs, as `security.sudo.extraRules` / `security.sudo-rs.extraRules` entries.
# Plain Nix (builtins only, no nixpkgs lib), so that the real-host tests render the very same rules with a bare
# `nix-instantiate` into a real sudoers file (tests/support/realhost.py) and drive every agentctl verb through
# real sudo; the module evaluation tests check users.nix passes exactly this.
#
#   helper      absolute path of keystone-agent-svc (the admin helper)
#   systemctl   absolute path of systemctl
#   agents      [ { user = "agent-<name>"; systemUnits = [ "agent-<name>-ssh-agent" … ]; } … ]
#   group       the admins' group
#
# - members of `group` may run the helper, with any arguments, as each agent (the helper re-checks the verb);
# - and `systemctl status|start|stop|restart UNIT.service` as root, for exactly the agent's listed system units.
{ helper, systemctl, agents, group ? "agent-admins" }:
let
  # agentctl/verbs.py SYSTEM_UNIT_VERBS (a test keeps the two equal)
  unitVerbs = [ "status" "start" "stop" "restart" ];
  nopasswd = command: { inherit command; options = [ "NOPASSWD" ]; };
  helperRule = agent: {
    groups = [ group ];
    runAs = agent.user;
    commands = [ (nopasswd helper) ];
  };
  unitRule = agent: {
    groups = [ group ];
    runAs = "root";
    commands = builtins.concatMap
      (unit: map (verb: nopasswd "${systemctl} ${verb} ${unit}.service") unitVerbs)
      agent.systemUnits;
  };
in
map helperRule agents
++ map unitRule (builtins.filter (agent: agent.systemUnits != [ ]) agents)
