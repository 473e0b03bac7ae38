{
  description = "keystone-agents: autonomous LLM agents living as locked-down Linux users on NixOS";

  # flake.lock pins nixpkgs to a real nixos-unstable revision (929116e3, 2024-12-05) for standalone use
  # (`nix build`, `nix flake check`). A NixOS flake using this one makes it follow its own nixpkgs:
  #   inputs.keystone-agents.inputs.nixpkgs.follows = "nixpkgs";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      # The module builds the package with the host's own pkgs (keystone.os.agentRuntime.package).
      nixosModules.default = ./modules/os/agents;
      nixosModules.keystone-agents = self.nixosModules.default;

      overlays.default = final: _prev: { keystone-agents = final.callPackage ./nix/package.nix { }; };

      packages = forAllSystems (_system: pkgs: rec {
        keystone-agents = pkgs.callPackage ./nix/package.nix { };
        default = keystone-agents;
      });

      checks = forAllSystems (system: pkgs:
        let
          example = nixpkgs.lib.nixosSystem {
            inherit system;
            modules = [
              self.nixosModules.default
              ./nix/example.nix
              {
                boot.loader.grub.enable = false;
                fileSystems."/".device = "none";
                system.stateVersion = "25.05";
              }
            ];
          };
          inherit (example) config;
          failed = builtins.filter (a: !a.assertion) config.assertions;
          etc = name: pkgs.writeText (baseNameOf name) config.environment.etc.${name}.text;
          agentConfigs = builtins.filter (n: nixpkgs.lib.hasPrefix "keystone-agents/agents/" n)
            (builtins.attrNames config.environment.etc);
          package = self.packages.${system}.default;
        in
        {
          package = package;
          # The example configuration evaluates without failed assertions, and the runtime accepts the JSON
          # config the module writes for every local agent.
          example-configuration =
            if failed != [ ] then throw (builtins.concatStringsSep "\n" (map (a: a.message) failed))
            else pkgs.runCommand "keystone-agents-example-configuration" { } ''
              export HOME=$TMPDIR
              ${nixpkgs.lib.concatMapStrings (n: ''
                ${package}/bin/keystone-agent validate --home "$TMPDIR" --config ${etc n}
              '') agentConfigs}
              touch $out
            '';
        });
    };
}
