# agentctl on the host, and its host config: every known agent (local or on another host), where it lives,
# its notes dir, its VNC port, and for local agents the admin helper agentctl runs commands through
# (keystone-agent-svc), its system units, PATH and SSH agent socket.
# The format agentctl reads: python/keystone_agents/schemas/host-config.schema.json (checked by the tests).
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg;
  rt = config.keystone.os.agentRuntime;

  agentEntry = name:
    let a = cfg.${name}; local = L.isLocal name; in
    {
      inherit name;
      user = L.userOf name;
      uid = L.uidOf name;
      host = L.hostOf name;
      inherit (a) fullName archetype;
      email = if a.email != null then a.email else a.mail.address;
      home = L.homeOf name;
      notesDir = a.notes.path;
      configPath = L.configPath name;
      desktop = a.desktop.enable;
      helper = if local then L.helperPath else null;
      systemUnits = if local then L.systemUnitsOf name else [ ];
      path = if local then L.unitPath name else null;
      sshAuthSock = if local && a.ssh.keyFile != null then L.sshSocketOf name else null;
      vncPort = L.vncPortOf name;
      vncBind = if a.desktop.enable then a.desktop.vncBind else null;
      chromeDebugPort = L.chromePortOf name;
      units = L.unitNames name;
      inherit (a.exec) mode watchPrefixes;
      comms = { inherit (a.comms) acceptFrom maxDepth sendsPerHour; };
      shared = { inherit (a.shared) writePrefixes; };
      inherit (a) triggers;
    };

  hostConfig = {
    version = 1;
    hostName = config.networking.hostName;
    systemctl = L.systemctlPath;
    agents = map agentEntry L.names;
    coordination = {
      inherit (L.coordinationOf) backend postgresql maxDeliveries leaseSeconds;
      shared = { inherit (rt.coordination.shared) maxValueBytes quotaBytes; };
      local = L.coordinationOf.local // { database = "/var/lib/keystone-bus/bus.sqlite3"; };
      inherit (rt) admins;
      adminGroup = "agent-admins";
    };
  };
in
{
  config = lib.mkIf (cfg != { }) {
    environment.systemPackages = [ rt.package ];
    environment.etc.${lib.removePrefix "/etc/" L.hostConfigPath} = {
      text = builtins.toJSON hostConfig;
      mode = "0444";
    };
  };
}
