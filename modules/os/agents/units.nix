# The agent's own work, as systemd *user* units of agent-<name> (ConditionUser= keeps other users' managers
# from running them): the task loop and the scheduler on timers, and the notes sync when a repo is set. Each
# calls `keystone-agent loop|schedule|sync --config <the agent's JSON>` with the agent's whole profile on PATH.
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg localNames userOf unitNames;
  inherit (lib) mkIf mkForce listToAttrs nameValuePair concatMap optional;
  rt = config.keystone.os.agentRuntime;

  environmentOf = name: {
    PATH = mkForce (L.unitPath name);
    KEYSTONE_AGENT_CONFIG = L.configPath name;
    PROMETHEUS_TEXTFILE_DIR = L.textfileDir;
    GIT_SSH_COMMAND = "ssh -o StrictHostKeyChecking=accept-new";
  } // lib.optionalAttrs (cfg.${name}.ssh.keyFile != null) {
    SSH_AUTH_SOCK = L.sshSocketOf name;
  } // L.pgClientEnv name;

  # job: { unit, command, description, onCalendar, timeoutSec }
  jobsOf = name:
    let
      a = cfg.${name};
      u = unitNames name;
      loop = a.notes.taskLoop;
    in
    [
      {
        unit = u.taskLoop;
        command = "loop";
        description = "Task loop of agent ${name}: prefetch, ingest, prioritize, execute";
        onCalendar = loop.onCalendar;
        # every task may use its whole timeout, plus time for prefetch, ingest and prioritize
        timeoutSec = loop.maxTasks * loop.timeout + 900;
      }
      {
        unit = u.scheduler;
        command = "schedule";
        description = "Scheduler of agent ${name}: SCHEDULES.yaml and calendar events become tasks";
        onCalendar = a.notes.scheduler.onCalendar;
        timeoutSec = 600;
      }
    ]
    ++ optional (a.notes.repo != null) {
      unit = u.notesSync;
      command = "sync";
      description = "Notes sync of agent ${name}: commit, rebase and push ${a.notes.path}";
      onCalendar = a.notes.sync.onCalendar;
      timeoutSec = 600;
    };

  serviceOf = name: job: nameValuePair job.unit {
    inherit (job) description;
    # the home (and a separately mounted notes dir) must be there; the ssh-agent and the git identity are
    # ordered before the agent's user manager (services.nix, tools.nix)
    unitConfig.ConditionUser = userOf name;
    unitConfig.RequiresMountsFor = lib.unique [ (L.homeOf name) cfg.${name}.notes.path ];
    environment = environmentOf name;
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${rt.package}/bin/keystone-agent ${job.command} --config ${L.configPath name}";
      TimeoutStartSec = job.timeoutSec;
      # exit 3 is "degraded" (a source, a task or an entry failed; the rest went on): reported through the
      # metrics and alerts, not as a failed unit
      SuccessExitStatus = "3";
      SyslogIdentifier = job.unit;
      LogRateLimitIntervalSec = 0;
    } // L.hardening.userUnit;
  };

  timerOf = name: job: nameValuePair job.unit {
    description = "Timer: ${job.description}";
    wantedBy = [ "timers.target" ];
    unitConfig.ConditionUser = userOf name;
    timerConfig = {
      OnCalendar = job.onCalendar;
      Persistent = true;
      Unit = "${job.unit}.service";
    };
  };

  forAll = f: listToAttrs (concatMap (name: map (f name) (jobsOf name)) localNames);
  # an agent without "schedule" in its triggers is purely reactive: no task-loop timer (comms and agentctl
  # run still start the service)
  timed = name: job: job.unit != (unitNames name).taskLoop || lib.elem "schedule" cfg.${name}.triggers;
  forTimers = f: listToAttrs (concatMap (name: map (f name) (builtins.filter (timed name) (jobsOf name))) localNames);
in
{
  config = mkIf (cfg != { }) {
    systemd.user.services = forAll serviceOf;
    systemd.user.timers = forTimers timerOf;
  };
}
