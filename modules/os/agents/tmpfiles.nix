# The node_exporter textfile directory the agents write their .prom files to. Sticky and group-writable by
# `agents`: every agent can create its own files (written through a temp file and a rename), none can replace
# or delete another agent's; node_exporter reads them all.
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
in
{
  config = lib.mkIf (L.localNames != [ ]) {
    systemd.tmpfiles.rules = [ "d ${L.textfileDir} 1775 root agents -" ];
  };
}
