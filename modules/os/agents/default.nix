# keystone.os.agents.<name>: autonomous LLM agents as locked-down Linux users.
# One file per concern; each reads the options declared in ./options.nix and the helpers of ./lib.nix.
{ ... }:
{
  imports = [
    ./options.nix
    ./keys.nix
    ./users.nix
    ./services.nix
    ./switch.nix
    ./units.nix
    ./modes.nix
    ./config.nix
    ./agentctl.nix
    ./tmpfiles.nix
    ./observability.nix
    ./coordination.nix
    ./policy.nix
    ./tools.nix
  ];
}
