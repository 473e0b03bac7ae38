# Every option the agents module declares, as JSON (name, type, default, description), for docs/nixos.md.
#   nix-instantiate --eval --strict --json tests/nix/options.nix --argstr nixpkgsLib "$NIXPKGS_LIB"
{ nixpkgsLib }:
let
  lib = import nixpkgsLib;
  pkgs = import ./pkgs.nix { inherit lib; root = "/stand-in"; };
  evaluated = lib.evalModules {
    modules = [ ./stubs.nix ../../modules/os/agents { _module.args.pkgs = pkgs; } ];
  };
  docs = lib.optionAttrSetToDocList evaluated.options.keystone;
in
map (o: {
  inherit (o) name type description;
  default = o.default.text or null;
}) (builtins.filter (o: o.visible && !o.internal) docs)
