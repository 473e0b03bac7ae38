# Accounts: groups agents and agent-admins, one locked user per local agent, homes that other agents cannot
# read but admins can, lingering (user units run without a login), the sudo rules of the admin helper, and
# the assertions that keep UIDs and names sane.
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg localNames userOf homeOf uidOf;
  inherit (lib) concatMap concatStringsSep listToAttrs nameValuePair mkIf filter;
  rt = config.keystone.os.agentRuntime;

  # sudo: agent-admins run keystone-agent-svc (the admin helper) as each agent, and systemctl
  # status|start|stop|restart on each agent's own system units as root. The verbs live in the package's
  # allow-list (python/keystone_agents/agentctl/verbs.py), not here.
  sudoRules = import ./sudo-rules.nix {
    helper = L.helperPath;
    systemctl = L.systemctlPath;
    agents = map (name: { user = userOf name; systemUnits = L.systemUnitsOf name; }) localNames;
  };

  # --- assertions -------------------------------------------------------------------------------------------
  agentUsers = map userOf L.names;
  uidOwners = uid: filter (n: uidOf n == uid) L.names;
  uidClashes = lib.unique (filter (uid: builtins.length (uidOwners uid) > 1) (map uidOf L.names));
  otherUsers = lib.filterAttrs (uname: u: !(builtins.elem uname agentUsers) && (u.uid or null) != null) config.users.users;
  clashWithOthers = name: builtins.attrNames (lib.filterAttrs (_: u: u.uid == uidOf name) otherUsers);
  howSet = n: if cfg.${n}.uid != null then "set explicitly" else "automatic";
  freeUid = let used = map uidOf L.names ++ lib.mapAttrsToList (_: u: u.uid) otherUsers;
                go = u: if builtins.elem u used then go (u + 1) else u;
            in go 4001;
  badName = name: builtins.match "[a-z][a-z0-9-]*" name == null || builtins.stringLength (userOf name) > 32;
  portClashes = portOf: label: option:
    let byHost = lib.groupBy L.hostOf (filter (n: portOf n != null) L.names);
    in lib.concatLists (lib.mapAttrsToList (host: ns:
      map (port: { inherit host port label option; agents = filter (n: portOf n == port) ns; })
        (lib.unique (filter (p: builtins.length (filter (n: portOf n == p) ns) > 1) (map portOf ns)))) byHost);
in
{
  config = mkIf (cfg != { }) {
    assertions =
      map (name: {
        assertion = !(badName name);
        message = "keystone.os.agents.${name}: agent names must match [a-z][a-z0-9-]* and agent-<name> must be at most 32 characters; rename keystone.os.agents.${name}.";
      }) L.names
      ++ map (uid: {
        assertion = false;
        message = "keystone.os.agents: UID ${toString uid} is used by several agents (${concatStringsSep ", " (map (n: "${n} (${howSet n})") (uidOwners uid))}); give each a distinct keystone.os.agents.<name>.uid, e.g. ${toString freeUid}, or remove the explicit uid to use the automatic one.";
      }) uidClashes
      ++ map (name: {
        assertion = clashWithOthers name == [ ];
        message = "keystone.os.agents.${name}: UID ${toString (uidOf name)} (${howSet name}) of agent-${name} is also the UID of users.users.${concatStringsSep ", users.users." (clashWithOthers name)}; set keystone.os.agents.${name}.uid to a free UID (e.g. ${toString freeUid}) or change the other user's uid.";
      }) localNames
      ++ map (c: {
        assertion = false;
        message = "keystone.os.agents: agents ${concatStringsSep " and " c.agents} on host ${c.host} both use ${c.label} port ${toString c.port}; set keystone.os.agents.<name>.${c.option} to distinct ports (or leave them null to allocate automatically).";
      }) (portClashes L.vncPortOf "VNC" "desktop.vncPort" ++ portClashes L.chromePortOf "Chromium debug" "chrome.debugPort")
      ++ concatMap (name:
        let a = cfg.${name}; in [
          {
            assertion = a.ssh.passphraseFile == null || a.ssh.keyFile != null;
            message = "keystone.os.agents.${name}.ssh.passphraseFile is set but ssh.keyFile is not; set ssh.keyFile to the private key file (e.g. /run/agenix/agent-${name}-ssh-key).";
          }
          {
            assertion = a.mail.address == null || (a.mail.imap.host != null && a.mail.smtp.host != null);
            message = "keystone.os.agents.${name}.mail.address is set, so mail.imap.host and mail.smtp.host must be set too (e.g. \"mail.example.com\").";
          }
          {
            assertion = builtins.all (f: f == null || !(lib.hasPrefix builtins.storeDir f)) [
              a.ssh.keyFile a.ssh.passphraseFile a.mail.passwordFile a.calendar.passwordFile a.github.tokenFile a.forgejo.tokenFile
            ];
            message = "keystone.os.agents.${name}: a secret file points into ${builtins.storeDir}, which is world-readable; use agenix (/run/agenix/...) or sops-nix (/run/secrets/...) paths.";
          }
        ]) localNames;

    warnings = concatMap (name:
      lib.optional (cfg.${name}.chrome.enable && !cfg.${name}.desktop.enable)
        "keystone.os.agents.${name}: chrome.enable needs desktop.enable; Chromium is not started. Set chrome.enable = false to silence this.")
      localNames;

    users.groups.agents = { };
    users.groups.agent-admins.members = rt.admins;

    users.users = listToAttrs (map (name: nameValuePair (userOf name) {
      isNormalUser = true;
      uid = uidOf name;
      group = "agents";
      description = cfg.${name}.fullName;
      home = homeOf name;
      # the home is created with group agent-admins below; createHome would give it the primary group `agents`,
      # which every agent shares
      createHome = false;
      hashedPassword = "!";
      linger = true;
      packages = [ rt.package pkgs.git pkgs.openssh ] ++ cfg.${name}.extraPackages;
    }) localNames);

    # 0750 agent-<name>:agent-admins — the agent writes, admins read, nobody else (other agents included)
    # enters. Admins change an agent's files through agentctl, as the agent, so every file keeps its owner.
    systemd.tmpfiles.rules = map (name: "d ${homeOf name} ${L.homeMode} ${userOf name} agent-admins -") localNames;
    system.activationScripts.agentHomes = {
      deps = [ "users" "groups" ];
      text = concatStringsSep "\n" (map (name: ''
        ${pkgs.coreutils}/bin/install -d -m ${L.homeMode} -o ${userOf name} -g agent-admins ${homeOf name}
        ${pkgs.coreutils}/bin/chown ${userOf name}:agent-admins ${homeOf name}
        ${pkgs.coreutils}/bin/chmod ${L.homeMode} ${homeOf name}
      '') localNames);
    };

    security.sudo.extraRules = sudoRules;
  };
}
