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
    agents = map (name: { user = userOf name; systemUnits = L.systemUnitsOf name; }) accountNames;
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
  # NixOS aborts the whole evaluation for a user name of 32 characters or more, and refuses ':' or a newline
  # in passwd fields (types.passwdEntry); agents failing these get no account, only the assertion saying why.
  badName = name: builtins.match "[a-z][a-z0-9-]*" name == null || builtins.stringLength (userOf name) > 31;
  badFullName = name: builtins.match "[^:\n]*" cfg.${name}.fullName == null;
  lowUid = name: uidOf name < 1000;
  usable = name: !(badName name) && !(badFullName name) && !(lowUid name);
  accountNames = filter usable localNames;
  sudo = config.security.sudo;
  sudoRs = config.security.sudo-rs;
  wheelMembers = (config.users.groups.wheel.members or [ ])
    ++ builtins.attrNames (lib.filterAttrs (_: u: builtins.elem "wheel" (u.extraGroups or [ ])) config.users.users);
  adminsOutsideWheel = filter (a: !(builtins.elem a wheelMembers)) rt.admins;
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
        message = "keystone.os.agents.${name}: agent names must match [a-z][a-z0-9-]* and the user name agent-${name} must be at most 31 characters (NixOS refuses longer user names); rename keystone.os.agents.${name}.";
      }) L.names
      ++ map (name: {
        assertion = !(badFullName name);
        message = "keystone.os.agents.${name}.fullName contains ':' or a newline, which /etc/passwd cannot hold (it becomes the user's description); remove them from keystone.os.agents.${name}.fullName.";
      }) localNames
      ++ map (name: {
        assertion = !(lowUid name);
        message = "keystone.os.agents.${name}.uid is ${toString (uidOf name)}, but agents are normal users and need a UID of at least 1000 (below is the system range); set keystone.os.agents.${name}.uid to e.g. ${toString freeUid}, or remove it to use the automatic one.";
      }) localNames
      ++ [
        {
          assertion = localNames == [ ] || sudo.enable || sudoRs.enable;
          message = "keystone.os.agents: agentctl runs commands as the agents through sudo, but neither security.sudo.enable nor security.sudo-rs.enable is set; enable one of them (the module writes its rules for either).";
        }
      ]
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
            assertion = !a.desktop.enable || builtins.elem a.desktop.vncBind L.loopbackAddresses || a.desktop.vncConfigFile != null;
            message = "keystone.os.agents.${name}.desktop.vncBind is ${a.desktop.vncBind}, so the agent's desktop is reachable from the network, but wayvnc has no authentication; set keystone.os.agents.${name}.desktop.vncConfigFile to a wayvnc config with enable_auth=true (e.g. an agenix secret), or keep vncBind = \"127.0.0.1\" and use agentctl ${name} vnc over SSH.";
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
      localNames
      ++ lib.optional ((sudo.enable && sudo.execWheelOnly || sudoRs.enable && (sudoRs.execWheelOnly or false)) && adminsOutsideWheel != [ ])
        "keystone.os.agents: security.${if sudoRs.enable then "sudo-rs" else "sudo"}.execWheelOnly lets only wheel members run sudo, so the agent admins ${concatStringsSep ", " adminsOutsideWheel} cannot use agentctl on other users' agents; add them to the wheel group or set execWheelOnly = false.";

    users.groups.agents.gid = rt.agentsGid;
    users.groups.agent-admins = { gid = rt.adminsGid; members = rt.admins; };

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
      # lingering is switched on by agent-<name>-user-units (switch.nix), not users.users.<name>.linger: on
      # nixpkgs where that is a plain bool, setting it makes NixOS disable every other user's lingering
      packages = [ rt.package pkgs.git pkgs.openssh ] ++ cfg.${name}.extraPackages;
    }) accountNames);

    # 0750 agent-<name>:agent-admins — the agent writes, admins read, nobody else (other agents included)
    # enters. Admins change an agent's files through agentctl, as the agent, so every file keeps its owner.
    # systemd-tmpfiles creates the home and corrects its owner and mode on every boot and switch; it runs after
    # the users exist whichever way they are created (activation script, userborn or systemd-sysusers), where an
    # activation script of ours would run before userborn/sysusers created the user on the first switch.
    systemd.tmpfiles.rules = map (name: "d ${homeOf name} ${L.homeMode} ${userOf name} agent-admins -") accountNames;

    # the same rules for whichever sudo the host uses
    security.sudo.extraRules = mkIf sudo.enable sudoRules;
    security.sudo-rs.extraRules = mkIf sudoRs.enable sudoRules;
  };
}
