# Comms between agents (docs/comms.md): the coordination bus and what wakes an agent when a message arrives.
#   backend "local":      the broker keystone-bus.socket (Accept=yes) → keystone-bus@.service running
#                         `keystone-agent bus serve --stdio` as the keystone-bus user, sole owner of
#                         /var/lib/keystone-bus/bus.sqlite3; wake files under /run/keystone-bus/wake.
#   backend "postgresql": services.postgresql (createLocally), a role per agent and admin, and
#                         keystone-db-migrate.service (`keystone-agent bus migrate`, as postgres).
# Per agent with "comms" in triggers (user units): agent-<n>-comms.path (PathChanged on its wake file) →
# agent-<n>-comms.service (`comms drain`; OnFailure= agent-<n>-comms-failed.service, `comms drain-failed`, counts a
# drain that died), agent-<n>-loop-rerun.path (PathExists on state/run-requested) →
# the task loop, and for postgresql agent-<n>-listen.service (`comms listen`, touches the wake file).
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg names localNames userOf unitNames;
  inherit (lib) mkIf mkMerge listToAttrs nameValuePair concatMap optional optionals elem filter any all;
  rt = config.keystone.os.agentRuntime;
  co = rt.coordination;
  pg = co.postgresql;
  on = co.backend != "none";
  commsOn = name: elem "comms" cfg.${name}.triggers;
  commsAgents = filter commsOn localNames;
  remoteNames = filter (n: !(L.isLocal n)) names;
  stateDir = name: "${L.homeOf name}/.local/state/agent-task-loop/state";
  wakeFile = name:
    if co.backend == "local" then "/run/keystone-bus/wake/${name}" else "${stateDir name}/comms-wake";
  bin = "${rt.package}/bin/keystone-agent";
  pgHost = if pg.createLocally && pg.host == null then "/run/postgresql" else pg.host;
  # who reads the whole bus for the host's timers (audit anchor, approvals metrics): an admin of the bus
  busAdminUser = if co.auditAnchor.user != null then co.auditAnchor.user
                 else if co.backend == "local" || rt.admins == [ ] then "root" else lib.head rt.admins;

  userService = name: unit: attrs: nameValuePair unit (lib.recursiveUpdate {
    unitConfig.ConditionUser = userOf name;
    environment = { KEYSTONE_AGENT_CONFIG = L.configPath name; PATH = lib.mkForce (L.unitPath name); }
      // L.pgClientEnv name;
    serviceConfig = { SyslogIdentifier = unit; LogRateLimitIntervalSec = 0; } // L.hardening.userUnit;
  } attrs);
in
{
  config = mkIf (cfg != { }) (mkMerge [
    {
      assertions = [
        {
          assertion = remoteNames == [ ] || !(on || any commsOn names) || co.backend == "postgresql";
          message = "keystone.os.agents: agents live on several hosts (${lib.concatStringsSep ", " remoteNames} elsewhere) and use comms: set keystone.os.agentRuntime.coordination.backend = \"postgresql\" (the local broker only reaches agents of one host).";
        }
        {
          assertion = all (n: !(commsOn n)) localNames || on;
          message = "keystone.os.agents: ${lib.concatStringsSep ", " commsAgents} ha(s/ve) \"comms\" in triggers but keystone.os.agentRuntime.coordination.backend is \"none\": set it to \"local\" (one host) or \"postgresql\".";
        }
        {
          assertion = co.backend != "postgresql" || pg.createLocally || pg.host != null;
          message = "keystone.os.agentRuntime.coordination.postgresql: createLocally is false, so set host to the database server's name.";
        }
        {
          assertion = co.backend != "postgresql" || pg.createLocally
            || all (n: cfg.${n}.postgres.clientCertFile != null && cfg.${n}.postgres.clientKeyFile != null) localNames;
          message = "keystone.os.agents: the bus database is on another host (${toString pg.host}): set keystone.os.agents.<name>.postgres.clientCertFile and clientKeyFile for ${lib.concatStringsSep ", " (filter (n: cfg.${n}.postgres.clientCertFile == null || cfg.${n}.postgres.clientKeyFile == null) localNames)} (TLS client certificates, CN = agent-<name>).";
        }
        {
          assertion = co.backend != "postgresql" || !pg.createLocally || remoteNames == [ ]
            || (pg.allowedNetworks != [ ] && pg.caFile != null);
          message = "keystone.os.agentRuntime.coordination.postgresql: agents of other hosts (${lib.concatStringsSep ", " remoteNames}) reach this database with client certificates: set allowedNetworks and caFile.";
        }
      ];
    }

    # ------------------------------------------------------------ per agent: wake, drain, re-run
    (mkIf on {
      systemd.user.paths = listToAttrs (concatMap (name:
        let u = unitNames name; in [
          (nameValuePair "agent-${name}-comms" {
            description = "Wake agent ${name} when a message arrives (its wake file changes)";
            wantedBy = [ "default.target" ];
            unitConfig.ConditionUser = userOf name;
            pathConfig = {
              PathChanged = wakeFile name;
              Unit = "agent-${name}-comms.service";
              TriggerLimitIntervalSec = 0;  # touches are idempotent; never fall into the trigger-limit failure mode
            };
          })
          (nameValuePair "agent-${name}-loop-rerun" {
            description = "Run agent ${name}'s task loop while a run is requested (and again after a busy run)";
            wantedBy = [ "default.target" ];
            unitConfig.ConditionUser = userOf name;
            pathConfig = {
              PathExists = "${stateDir name}/run-requested";
              Unit = "${u.taskLoop}.service";
            };
          })
        ]) commsAgents);

      systemd.user.services = listToAttrs (concatMap (name:
        [
          (userService name "agent-${name}-comms" {
            description = "Comms drain of agent ${name}: received messages become tasks";
            # a drain that dies before it can count its own failure (timeout, crash) is counted by this unit
            unitConfig.OnFailure = "agent-${name}-comms-failed.service";
            serviceConfig = {
              Type = "oneshot";
              ExecStart = "${bin} comms drain --config ${L.configPath name}";
              TimeoutStartSec = 300;
            };
          })
          (userService name "agent-${name}-comms-failed" {
            description = "Record a failed comms drain of agent ${name} (metrics, event)";
            serviceConfig = {
              Type = "oneshot";
              ExecStart = "${bin} comms drain-failed --config ${L.configPath name}";
              TimeoutStartSec = 60;
            };
          })
        ] ++ optional (co.backend == "postgresql") (userService name "agent-${name}-listen" {
          description = "Comms listener of agent ${name}: LISTEN on its wake channel, touch its wake file";
          wantedBy = [ "default.target" ];
          serviceConfig = {
            Type = "simple";
            ExecStart = "${bin} comms listen --config ${L.configPath name}";
            Restart = "always";
            RestartSec = 5;
          };
        })) commsAgents);
    })

    # ------------------------------------------------------------ local: the broker
    (mkIf (co.backend == "local") {
      users.users.keystone-bus = {
        isSystemUser = true;
        group = "keystone-bus";
        description = "keystone-agents coordination bus broker";
        home = "/var/lib/keystone-bus";
      };
      users.groups.keystone-bus = { };
      systemd.tmpfiles.rules = [ "d /run/keystone-bus/wake 0755 keystone-bus keystone-bus -" ];
      systemd.sockets.keystone-bus = {
        description = "keystone-agents coordination bus (callers identified by SO_PEERCRED)";
        wantedBy = [ "sockets.target" ];
        listenStreams = [ "/run/keystone-bus/bus.sock" ];
        socketConfig = {
          SocketUser = "keystone-bus";
          SocketGroup = "keystone-bus";
          SocketMode = "0666";  # authorization is by the peer's uid, not by file mode: unknown uids are refused
          Accept = true;
          MaxConnections = 64;
        };
      };
      systemd.services."keystone-bus@" = {
        description = "keystone-agents coordination bus: one connection";
        unitConfig.CollectMode = "inactive-or-failed";  # systemd.socket(5) recommends it for Accept=yes
        serviceConfig = L.hardening.base // L.hardening.strictSyscalls // {
          User = "keystone-bus";
          Group = "keystone-bus";
          StandardInput = "socket";
          StandardOutput = "socket";
          StandardError = "journal";
          ExecStart = "${bin} bus serve --stdio --host-config ${L.hostConfigPath}";
          StateDirectory = "keystone-bus";
          StateDirectoryMode = "0700";
          ReadWritePaths = [ "/run/keystone-bus/wake" ];
          ProtectHome = true;
          PrivateNetwork = true;
          RestrictAddressFamilies = [ "AF_UNIX" ];
          IPAddressDeny = "any";
          UMask = "0077";
          RuntimeMaxSec = 3600;
        };
      };
    })

    # ------------------------------------------------------------ audit anchor (docs/audit.md)
    # on the host that holds the log (the broker's, or the local PostgreSQL), as an admin of the bus
    (mkIf (co.backend == "local" || (co.backend == "postgresql" && pg.createLocally
                                      && (co.auditAnchor.user != null || rt.admins != [ ]))) {
      systemd.services.keystone-audit-anchor = {
        description = "keystone-agents bus: record the audit log's head (journal event, metric)";
        after = optionals (co.backend == "postgresql" && pg.createLocally) [ "keystone-db-migrate.service" ];
        serviceConfig = L.hardening.base // {
          Type = "oneshot";
          User = busAdminUser;
          ExecStart = "${bin} audit anchor --host-config ${L.hostConfigPath} --textfile-dir ${L.textfileDir}";
          SyslogIdentifier = "keystone-audit-anchor";
          ReadWritePaths = [ L.textfileDir ];
        };
      };
      systemd.timers.keystone-audit-anchor = {
        description = "Anchor the keystone-agents audit log";
        wantedBy = [ "timers.target" ];
        timerConfig = { OnCalendar = co.auditAnchor.onCalendar; Persistent = true; };
      };
      # pending approvals as metrics (keystone_approvals_pending, …_oldest_pending_age_seconds: docs/policy.md)
      systemd.services.keystone-approvals-metrics = {
        description = "keystone-agents bus: pending approvals as node_exporter textfile metrics";
        after = optionals (co.backend == "postgresql" && pg.createLocally) [ "keystone-db-migrate.service" ];
        serviceConfig = L.hardening.base // {
          Type = "oneshot";
          User = busAdminUser;
          ExecStart = "${rt.package}/bin/agentctl --config ${L.hostConfigPath} approvals metrics --textfile ${L.textfileDir}/keystone-approvals.prom";
          SyslogIdentifier = "keystone-approvals-metrics";
          ReadWritePaths = [ L.textfileDir ];
        };
      };
      systemd.timers.keystone-approvals-metrics = {
        description = "Export the pending approvals of the keystone-agents";
        wantedBy = [ "timers.target" ];
        timerConfig = { OnCalendar = "minutely"; Persistent = true; };
      };
    })

    # ------------------------------------------------------------ postgresql
    (mkIf (co.backend == "postgresql" && pg.createLocally) {
      services.postgresql = {
        enable = true;
        ensureDatabases = [ pg.database ];
        ensureUsers = map (n: { name = userOf n; }) names ++ map (u: { name = u; }) rt.admins;
        enableTCPIP = pg.allowedNetworks != [ ];
        settings = lib.optionalAttrs (pg.allowedNetworks != [ ]) { ssl = true; ssl_ca_file = pg.caFile; };
        authentication = lib.concatMapStrings (net: ''
          hostssl ${pg.database} all ${net} cert clientcert=verify-full
        '') pg.allowedNetworks;
      };
      systemd.services.keystone-db-migrate = {
        description = "keystone-agents bus: schema migrations, roles and agent registry";
        wantedBy = [ "multi-user.target" ];
        after = [ "postgresql.service" ];
        requires = [ "postgresql.service" ];
        restartTriggers = [ config.environment.etc.${lib.removePrefix "/etc/" L.hostConfigPath}.text ];
        serviceConfig = L.hardening.base // {
          Type = "oneshot";
          RemainAfterExit = true;
          User = "postgres";
          ExecStart = "${bin} bus migrate --host-config ${L.hostConfigPath} --database ${pg.database}";
          ProtectHome = true;
          PrivateNetwork = true;
          RestrictAddressFamilies = [ "AF_UNIX" ];
          IPAddressDeny = "any";
        };
      };
    })
  ]);
}
