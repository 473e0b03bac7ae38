# Evaluate modules/os/agents with nixpkgs' lib.evalModules, the stand-in NixOS options (stubs.nix) and the
# stand-in pkgs (pkgs.nix), for one scenario module; return what a switch would produce, as plain JSON.
#   nix-instantiate --eval --strict --json tests/nix/eval.nix \
#     --argstr nixpkgsLib "$NIXPKGS_LIB" --arg scenario ./tests/nix/scenarios/two-agents.nix [--argstr pkgsRoot DIR]
{ nixpkgsLib, scenario, pkgsRoot ? "/stand-in" }:
let
  lib = import nixpkgsLib;
  pkgs = import ./pkgs.nix { inherit lib; root = pkgsRoot; };
  evaluated = lib.evalModules {
    modules = [
      ./stubs.nix
      ../../modules/os/agents
      scenario
      { _module.args.pkgs = pkgs; }
    ];
  };
  c = evaluated.config;
  pick = attrs: names: lib.filterAttrs (n: _: builtins.elem n names) attrs;
  pkgName = p: p.name;
in
{
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
  warnings = c.warnings;
  users = lib.mapAttrs (_: u:
    (pick u [ "name" "uid" "group" "extraGroups" "isNormalUser" "description" "home" "createHome" "linger" "hashedPassword" ])
    // { packages = map pkgName u.packages; }) c.users.users;
  groups = c.users.groups;
  services = c.systemd.services;
  userServices = c.systemd.user.services;
  userTimers = c.systemd.user.timers;
  timers = c.systemd.timers;
  userPaths = c.systemd.user.paths;
  sockets = c.systemd.sockets;
  postgresql = c.services.postgresql;
  tmpfiles = c.systemd.tmpfiles.rules;
  sudoRules = c.security.sudo.extraRules;
  etc = lib.mapAttrs (_: e: pick e [ "text" "mode" "user" "group" "uid" "gid" ]) c.environment.etc;
  # who owns each copied /etc file: by name with the classic /etc, by number only with the overlay or userborn
  etcOwners = lib.mapAttrs (_: e: if c.system.etc.overlay.enable || c.services.userborn.enable
    then { user = e.uid; group = e.gid; } else { user = e.user; group = e.group; }) c.environment.etc;
  sudoRsRules = c.security.sudo-rs.extraRules;
  scripts = lib.mapAttrs (_: s: { path = s.outPath; inherit (s) text; }) c.keystone.os.agentRuntime.generatedScripts;
  systemPackages = map pkgName c.environment.systemPackages;
  activationScripts = c.system.activationScripts;
  prometheus = { inherit (c.services.prometheus) enable rules; nodeExporter = c.services.prometheus.exporters.node; };
  grafana = { inherit (c.services.grafana) enable; provision = { inherit (c.services.grafana.provision) enable; providers = c.services.grafana.provision.dashboards.settings.providers; }; };
  etcSources = lib.mapAttrs (_: e: if e.source == null then null else toString e.source) c.environment.etc;
  package = pick c.keystone.os.agentRuntime.package [ "name" "pname" "version" "dependencies" "buildSystem" "nativeBuildInputs" "postInstall" ];
}
