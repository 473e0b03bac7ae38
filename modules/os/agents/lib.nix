# Plain helpers shared by the agent modules (not a module): which agents live here, deterministic UIDs and
# ports, unit names, paths, and the runtime config each agent's units read.
{ config, lib, pkgs }:
let
  inherit (lib) filterAttrs attrNames sort lessThan length elemAt;

  cfg = config.keystone.os.agents;
  rt = config.keystone.os.agentRuntime;
  hostName = config.networking.hostName;

  indexOf = x: xs:
    let go = i: if i >= length xs then null else if elemAt xs i == x then i else go (i + 1);
    in go 0;

  names = sort lessThan (attrNames cfg);
  hostOf = name: if cfg.${name}.host == null then hostName else cfg.${name}.host;
  isLocal = name: hostOf name == hostName;

  # Ports are allocated per host: the n-th agent (by name) of a host gets base + n, unless set.
  portOf = { enabled, explicit, base }: name:
    let peers = builtins.filter (n: enabled n && hostOf n == hostOf name) names;
    in
    if !(enabled name) then null
    else if explicit name != null then explicit name
    else base + indexOf name peers;

  # Seconds between two elapses of a systemd OnCalendar expression, for the simple forms agents use; null when
  # the expression is not a fixed interval (the runtime then does not count missed runs).
  calendarInterval = spec:
    let
      m = re: builtins.match re spec;
      day = "(\\*-\\*-\\* )?";
      num = s: lib.toInt (if builtins.match "0+" s != null then "0" else lib.removePrefix "0" s);
      named = { minutely = 60; hourly = 3600; daily = 86400; weekly = 604800; };
      everyMinutes = m (day + "\\*:0?0/([0-9]+)(:00)?");
      everySeconds = m (day + "\\*:\\*:0?0/([0-9]+)");
    in
    if named ? ${spec} then named.${spec}
    else if everyMinutes != null then 60 * num (elemAt everyMinutes 1)
    else if everySeconds != null then num (elemAt everySeconds 1)
    else if m (day + "\\*:[0-9]{1,2}(:[0-9]{2})?") != null then 3600
    else if m (day + "[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?") != null then 86400
    else null;

  desktopOn = name: cfg.${name}.desktop.enable;
  chromeOn = name: cfg.${name}.desktop.enable && cfg.${name}.chrome.enable;
  chromeMcpOn = name: chromeOn name && cfg.${name}.chrome.mcp.enable && cfg.${name}.chrome.mcp.package != null;
  loopbackAddresses = [ "127.0.0.1" "::1" "localhost" ];
in
rec {
  inherit cfg names hostOf isLocal indexOf calendarInterval;

  localAgents = filterAttrs (name: _: isLocal name) cfg;
  localNames = builtins.filter isLocal names;

  userOf = name: "agent-${name}";
  homeOf = name: "/home/agent-${name}";
  uidOf = name: if cfg.${name}.uid != null then cfg.${name}.uid else 4001 + indexOf name names;

  vncPortOf = portOf { enabled = desktopOn; explicit = n: cfg.${n}.desktop.vncPort; base = 5901; };
  chromePortOf = portOf { enabled = chromeOn; explicit = n: cfg.${n}.chrome.debugPort; base = 9222; };
  inherit desktopOn chromeOn chromeMcpOn loopbackAddresses;

  configDir = rt.configDir;
  configPath = name: "${rt.configDir}/agents/${name}.json";
  policyPath = name: "/etc/keystone-agents/agents/${name}/policy.json";  # root-owned (policy.nix)
  hostConfigPath = "${rt.configDir}/agentctl.json";
  sshSocketOf = name: "/run/agent-${name}-ssh-agent/agent.sock";
  homeMode = "0750";

  # The admin helper (sudo -u agent-<name> -- keystone-agent-svc VERB ARGS) and the systemctl the sudo rule
  # for agents' system units names.
  helperPath = "${rt.package}/bin/keystone-agent-svc";
  systemctlPath = "${pkgs.systemd}/bin/systemctl";
  # Every system unit the module creates for an agent (agent-<name>-…): agentctl routes
  # `status|start|stop|restart UNIT` for these to the system manager.
  systemUnitsOf = name:
    builtins.filter (unit: lib.hasPrefix "agent-${name}-" unit) (attrNames config.systemd.services);
  textfileDir = config.keystone.os.observability.nodeExporter.textfileDirectory;

  unitNames = name: {
    taskLoop = "agent-${name}-task-loop";
    scheduler = "agent-${name}-scheduler";
    notesSync = "agent-${name}-notes-sync";
    sshAgent = "agent-${name}-ssh-agent";
    labwc = "agent-${name}-labwc";
    wayvnc = "agent-${name}-wayvnc";
    chromium = "agent-${name}-chromium";
  };

  # The seed's "terminal environment requirement": units see the agent's whole profile, like its shell.
  unitPath = name: lib.concatStringsSep ":" [
    "/etc/profiles/per-user/agent-${name}/bin"
    "/run/wrappers/bin"
    "/run/current-system/sw/bin"
    "${pkgs.nix}/bin"
  ];

  dropNulls = filterAttrs (_: v: v != null);

  # The coordination bus as an agent's runtime reaches it (config.nix writes it; agentctl.nix for humans).
  coordinationOf = let co = rt.coordination; pg = co.postgresql; in {
    inherit (co) backend maxDeliveries leaseSeconds;
    postgresql = {
      host = if pg.createLocally && pg.host == null then "/run/postgresql" else pg.host;
      inherit (pg) port database;
    };
    local = { socket = "/run/keystone-bus/bus.sock"; wakeDir = "/run/keystone-bus/wake"; };
  };
  # libpq's TLS settings for an agent whose bus database is on another host (client certificate, CN = its role)
  pgClientEnv = name:
    let co = rt.coordination; a = cfg.${name}; in
    lib.optionalAttrs (co.backend == "postgresql" && !co.postgresql.createLocally && a.postgres.clientCertFile != null) ({
      PGSSLCERT = a.postgres.clientCertFile;
      PGSSLKEY = a.postgres.clientKeyFile;
      PGSSLMODE = "verify-full";
    } // lib.optionalAttrs (co.postgresql.caFile != null) { PGSSLROOTCERT = co.postgresql.caFile; });

  # Hardening of the units the module creates, as far as each unit's job allows; the scores
  # `systemd-analyze security --offline=true` gives the rendered system units are tested (<= 5.0) and
  # published in docs/nixos.md.
  hardening = rec {
    # what every system unit gets
    base = {
      NoNewPrivileges = true;
      PrivateTmp = true;
      ProtectSystem = "strict";
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectClock = true;
      ProtectHostname = true;
      RestrictSUIDSGID = true;
      RestrictRealtime = true;
      LockPersonality = true;
      SystemCallArchitectures = "native";
      CapabilityBoundingSet = "";
      AmbientCapabilities = "";
      PrivateDevices = true;
      DevicePolicy = "closed";
      ProtectProc = "invisible";
      KeyringMode = "private";
    };
    strictSyscalls = {
      MemoryDenyWriteExecute = true;
      RestrictNamespaces = true;
      SystemCallFilter = [ "@system-service" "~@privileged @resources" ];
      SystemCallErrorNumber = "EPERM";
    };
    # a unit running as the agent that needs its home (the rest of /home and /root stays hidden) and its
    # runtime directory /run/user/<uid>
    agentHome = name: {
      ProtectHome = "tmpfs";
      BindPaths = [ (homeOf name) "/run/user/${toString (uidOf name)}" ];
      UMask = "0027";
    };
    # the agent's ssh-agent: no home, no network, only its own socket
    sshAgent = base // strictSyscalls // {
      ProtectHome = true;
      PrivateNetwork = true;
      RestrictAddressFamilies = [ "AF_UNIX" ];
      IPAddressDeny = "any";
      UMask = "0077";
      ProcSubset = "pid";
    };
    # headless compositor: local sockets only
    labwc = name: base // strictSyscalls // agentHome name // {
      PrivateNetwork = true;
      RestrictAddressFamilies = [ "AF_UNIX" ];
      IPAddressDeny = "any";
    };
    # VNC server: TCP on vncBind plus the compositor's socket
    wayvnc = name: base // strictSyscalls // agentHome name // {
      RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
    };
    # a browser: JIT (no MemoryDenyWriteExecute) and its own sandbox (namespaces); network
    chromium = name: base // agentHome name // {
      RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
      SystemCallFilter = [ "@system-service" "@mount" "chroot" ];
    };
    # root oneshot applying an agent's user units after a switch: talks to logind and the user manager
    switchUnit = base // {
      ProtectHome = "read-only";
      PrivateNetwork = true;
      RestrictAddressFamilies = [ "AF_UNIX" ];
      IPAddressDeny = "any";
      MemoryDenyWriteExecute = true;
      SystemCallFilter = [ "@system-service" ];
      UMask = "0077";
    };
    # the agent's own work, in its user manager (no namespaces there: the provider CLIs sandbox themselves,
    # and Node-based ones need writable executable memory)
    userUnit = {
      NoNewPrivileges = true;
      LockPersonality = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      SystemCallArchitectures = "native";
    };
  };
}
