# The agent's own tools, configured from its options:
# - its git identity: agent-<name>-git-config.service (oneshot, as the agent, before its user manager starts)
#   runs `keystone-agent configure`, which writes ~/.config/git/config (name, email, SSH signing with
#   ssh.publicKey through the ssh-agent), the allowed-signers file and the agent space's .mcp.json — the
#   same code `keystone-agent init` runs on a non-NixOS home — and, with tools.bitwarden.serverUrl, `bw config
#   server`;
# - the Pimalaya tools: himalaya (IMAP/SMTP, from mail.*), calendula (CalDAV, from calendar.*), cardamum
#   (CardDAV, from contacts.*): a TOML file under /etc/keystone-agents/agents/<name>/ (readable by the agent and
#   agent-admins; it holds the password *file path*, read by the tool through `cat`), linked into ~/.config;
# - the packages on the agent's PATH (added to extraPackages in options.nix).
{ config, lib, pkgs, options, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg localNames userOf homeOf uidOf;
  inherit (lib) mkIf listToAttrs nameValuePair concatMap optional optionals concatStringsSep mapAttrsToList;
  rt = config.keystone.os.agentRuntime;

  # TOML of dotted keys (`backend.auth.type = "password"`) under one table: JSON's strings, numbers, booleans
  # and arrays of them are valid TOML values.
  tomlTable = table: pairs:
    "[${table}]\n" + concatStringsSep "" (mapAttrsToList (k: v: "${k} = ${builtins.toJSON v}\n") pairs);

  cat = file: "${pkgs.coreutils}/bin/cat ${lib.escapeShellArg file}";
  encryption = e: { tls = "tls"; starttls = "start-tls"; none = "none"; }.${e.security};

  himalayaConfig = name:
    let a = cfg.${name}; m = a.mail; login = if m.user != null then m.user else m.address; in
    tomlTable "accounts.${builtins.toJSON name}" ({
      default = true;
      email = m.address;
      display-name = a.fullName;
      "backend.type" = "imap";
      "backend.host" = m.imap.host;
      "backend.port" = m.imap.port;
      "backend.encryption.type" = encryption m.imap;
      "backend.login" = login;
      "message.send.backend.type" = "smtp";
      "message.send.backend.host" = m.smtp.host;
      "message.send.backend.port" = m.smtp.port;
      "message.send.backend.encryption.type" = encryption m.smtp;
      "message.send.backend.login" = login;
    } // lib.optionalAttrs (m.passwordFile != null) {
      "backend.auth.type" = "password";
      "backend.auth.cmd" = cat m.passwordFile;
      "message.send.backend.auth.type" = "password";
      "message.send.backend.auth.cmd" = cat m.passwordFile;
    });

  davConfig = name: kind: settings:
    let
      a = cfg.${name};
      user = if settings.user != null then settings.user else if a.mail.user != null then a.mail.user else a.mail.address;
      password = if settings.passwordFile != null then settings.passwordFile else a.mail.passwordFile;
    in
    tomlTable "accounts.${builtins.toJSON name}" ({
      default = true;
      "${kind}.server" = settings.url;
    } // lib.optionalAttrs (user != null) { "${kind}.auth.basic.username" = user; }
      // lib.optionalAttrs (password != null) { "${kind}.auth.basic.password.command" = [ "${pkgs.coreutils}/bin/cat" password ]; });

  # tool → { enabled, file text, package }
  toolsOf = name:
    let a = cfg.${name}; in
    lib.filterAttrs (_: t: t.enable) {
      himalaya = { enable = a.tools.himalaya.enable && a.mail.address != null; text = himalayaConfig name; package = pkgs.himalaya; };
      calendula = { enable = a.tools.calendula.enable && a.calendar.url != null && a.tools.calendula.package != null; text = davConfig name "caldav" a.calendar; package = a.tools.calendula.package; };
      cardamum = { enable = a.tools.cardamum.enable && a.contacts.url != null && a.tools.cardamum.package != null; text = davConfig name "carddav" a.contacts; package = a.tools.cardamum.package; };
    };

  toolEtc = name: tool: "keystone-agents/agents/${name}/${tool}.toml";

  gitConfigService = name:
    let a = cfg.${name}; in
    nameValuePair "agent-${name}-git-config" {
      description = "Git identity, signing and MCP servers of agent ${name} (keystone-agent configure)";
      wantedBy = [ "multi-user.target" ];
      # the user manager (and so the notes sync, the task loop) starts with the identity in place
      before = [ "user@${toString (uidOf name)}.service" ];
      unitConfig.RequiresMountsFor = homeOf name;
      environment = {
        HOME = homeOf name;
        USER = userOf name;
        KEYSTONE_AGENT_CONFIG = L.configPath name;
        PATH = lib.mkForce (L.unitPath name);
      };
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = userOf name;
        Group = "agents";
        ExecStart = "${rt.package}/bin/keystone-agent configure --config ${L.configPath name}";
      } // L.hardening.base // L.hardening.agentHome name // {
        # it writes files in the home, nothing else: no network
        PrivateNetwork = true;
        RestrictAddressFamilies = [ "AF_UNIX" ];
        IPAddressDeny = "any";
      } // lib.optionalAttrs (a.tools.bitwarden.serverUrl != null) {
        ExecStartPost = "${pkgs.bitwarden-cli}/bin/bw config server ${lib.escapeShellArg a.tools.bitwarden.serverUrl}";
      };
    };

  # agenix: the module is imported when `age.secrets` exists; each /run/agenix/<secret> the agent reads must
  # then be declared (owned by the agent)
  agenix = options ? age && options.age ? secrets;
  declared = path: builtins.any (s: s.path == path) (builtins.attrValues config.age.secrets);
  agenixFiles = name:
    let a = cfg.${name}; in
    builtins.filter (f: f != null && lib.hasPrefix "/run/agenix/" f) [ a.ssh.keyFile a.ssh.passphraseFile ];
  missingSecrets = name: if agenix then builtins.filter (f: !(declared f)) (agenixFiles name) else [ ];
  secretHint = name: f:
    let s = lib.removePrefix "/run/agenix/" f; in
    ''age.secrets."${s}" = { file = ./secrets/${s}.age; owner = "${userOf name}"; };'';
in
{
  config = mkIf (cfg != { }) {
    assertions = concatMap (name:
      let a = cfg.${name}; in [
        {
          assertion = missingSecrets name == [ ];
          message = "keystone.os.agents.${name}: the ssh-agent loads ${concatStringsSep " and " (missingSecrets name)}, which agenix does not provide; declare ${concatStringsSep " " (map (secretHint name) (missingSecrets name))} (or set keystone.os.agents.${name}.ssh.keyFile / ssh.passphraseFile to the paths your secrets tool provides).";
        }
        {
          assertion = !a.tools.calendula.enable || a.tools.calendula.package != null;
          message = "keystone.os.agents.${name}.tools.calendula.enable is set, but calendula is not in nixpkgs; set keystone.os.agents.${name}.tools.calendula.package (e.g. calendula.packages.\${system}.default from github:pimalaya/calendula).";
        }
        {
          assertion = !a.tools.cardamum.enable || a.tools.cardamum.package != null;
          message = "keystone.os.agents.${name}.tools.cardamum.enable is set, but cardamum is not in nixpkgs; set keystone.os.agents.${name}.tools.cardamum.package (e.g. cardamum.packages.\${system}.default from github:pimalaya/cardamum).";
        }
        {
          assertion = !a.tools.calendula.enable || a.calendar.url != null;
          message = "keystone.os.agents.${name}.tools.calendula.enable needs keystone.os.agents.${name}.calendar.url (the CalDAV server).";
        }
        {
          assertion = !a.tools.cardamum.enable || a.contacts.url != null;
          message = "keystone.os.agents.${name}.tools.cardamum.enable needs keystone.os.agents.${name}.contacts.url (the CardDAV server).";
        }
      ]) localNames;

    systemd.services = listToAttrs (map gitConfigService localNames);

    environment.etc = listToAttrs (concatMap (name:
      mapAttrsToList (tool: t: nameValuePair (toolEtc name tool) {
        text = t.text;
        mode = "0440";
        # by name and by number (the overlay /etc and userborn only use uid/gid), as config.nix does
        user = userOf name;
        group = "agent-admins";
        uid = uidOf name;
        gid = rt.adminsGid;
      }) (toolsOf name)) localNames);

    systemd.tmpfiles.rules = concatMap (name:
      let tools = toolsOf name; in
      optionals (tools != { }) [ "d ${homeOf name}/.config 2770 ${userOf name} agent-admins -" ]
      ++ concatMap (tool: [
        "d ${homeOf name}/.config/${tool} 2770 ${userOf name} agent-admins -"
        "L+ ${homeOf name}/.config/${tool}/config.toml - - - - /etc/${toolEtc name tool}"
      ]) (builtins.attrNames tools)) localNames;

  };
}
