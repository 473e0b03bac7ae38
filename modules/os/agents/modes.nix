# Execution modes (keystone.os.agents.<name>.exec, docs/exec-modes.md): the think timer of a proactive agent,
# the tick timer of a tick agent, and the assertions that keep a mode's requirements. A reactive agent is woken
# by the comms path units of coordination.nix ("comms" in triggers). systemd stays the
# daemon: each cycle is one short-lived `keystone-agent loop --trigger think|tick`.
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg localNames userOf unitNames;
  inherit (lib) mkIf mkForce listToAttrs nameValuePair concatMap optional;
  rt = config.keystone.os.agentRuntime;

  # The runtime config the agent will read (options merged with `settings`): one definition, config.nix's.
  runtimeOf = name: builtins.fromJSON config.environment.etc.${lib.removePrefix "/etc/" (L.configPath name)}.text;

  # The execute stage's provider, as the runtime resolves it (stage, then defaults, then claude).
  executeProvider = rc:
    let pick = s: if (rc.${s} or { }) ? provider then rc.${s}.provider else null;
    in if pick "execute" != null then pick "execute" else if pick "defaults" != null then pick "defaults" else "claude";

  # Local = the same rule as keystone_agents.modes.local_provider_problem (a parity test checks both).
  loopbackUrl = url: builtins.match "https?://(localhost|127[.][0-9.]+|[[]::1])(:[0-9]+)?(/.*)?" url != null;
  localProblem = rc:
    let p = executeProvider rc; in
    if p == "command" then null
    else if p == "openai" then
      (if loopbackUrl ((rc.openaiProvider or { }).baseUrl or "") then null
       else "provider openai needs a loopback openaiProvider.baseUrl (http://127.0.0.1:PORT/v1, http://localhost:PORT/v1)")
    else if p == "codex" then
      (let cp = rc.codexProvider or null; in
       if cp != null && (cp.localProvider or null) != null then null
       else "provider codex needs codexProvider.localProvider (ollama or lmstudio: codex --oss)")
    else "provider ${p} is hosted; tick needs a local one: command (e.g. ollama run {model}), openai with a loopback baseUrl, or codex with codexProvider.localProvider";

  modeOf = name: cfg.${name}.exec.mode;
  statePath = "%h/.local/state/agent-task-loop/state";

  environmentOf = name: {
    PATH = mkForce (L.unitPath name);
    KEYSTONE_AGENT_CONFIG = L.configPath name;
    PROMETHEUS_TEXTFILE_DIR = L.textfileDir;
  };

  # the cycle's service: one run of the loop for the trigger
  cycleService = name: trigger: {
    description = "${trigger} cycle of agent ${name} (exec.mode ${modeOf name})";
    unitConfig = {
      ConditionUser = userOf name;
    } // lib.optionalAttrs (trigger == "tick") { ConditionPathExists = "!${statePath}/tick-ended"; };
    environment = environmentOf name;
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${rt.package}/bin/keystone-agent loop --trigger ${trigger} --config ${L.configPath name}";
      TimeoutStartSec = cfg.${name}.notes.taskLoop.timeout + 900;
      SyslogIdentifier = "agent-${name}-${trigger}";
      LogRateLimitIntervalSec = 0;
    } // L.hardening.userUnit;
  };

  cycleTimer = name: trigger: {
    description = "Timer: ${trigger} cycle of agent ${name} every ${toString cfg.${name}.exec.thinkInterval}s";
    wantedBy = [ "timers.target" ];
    unitConfig = {
      ConditionUser = userOf name;
    } // lib.optionalAttrs (trigger == "tick") { ConditionPathExists = "!${statePath}/tick-ended"; };
    timerConfig = {
      OnActiveSec = 1;
      AccuracySec = "1s";
      Unit = "agent-${name}-${trigger}.service";
    } // (if trigger == "think"
      then { OnUnitInactiveSec = cfg.${name}.exec.thinkInterval; }  # from the end of the last cycle: no overlap
      else { OnUnitActiveSec = cfg.${name}.exec.thinkInterval; });
  };

  triggerOf = name: if modeOf name == "proactive" then "think" else if modeOf name == "tick" then "tick" else null;
  cycled = builtins.filter (n: triggerOf n != null && cfg.${n}.exec.thinkInterval != null) localNames;
  forCycled = f: listToAttrs (map (n: nameValuePair "agent-${n}-${triggerOf n}" (f n (triggerOf n))) cycled);
in
{
  config = mkIf (cfg != { }) {
    assertions = concatMap (name:
      let a = cfg.${name}; mode = a.exec.mode; in [
        {
          assertion = !(builtins.elem mode [ "proactive" "tick" ]) || a.exec.thinkInterval != null;
          message = "keystone.os.agents.${name}.exec.mode = \"${mode}\" needs keystone.os.agents.${name}.exec.thinkInterval (seconds between cycles, e.g. 60).";
        }
        {
          assertion = mode != "tick" || localProblem (runtimeOf name) == null;
          message = "keystone.os.agents.${name}.exec.mode = \"tick\" needs a local execute provider: ${toString (localProblem (runtimeOf name))}; set keystone.os.agents.${name}.notes.taskLoop.execute.provider = \"command\" (with settings.commandProvider.argv = [ \"ollama\" \"run\" \"{model}\" ]) or \"openai\" with settings.openaiProvider.baseUrl = \"http://127.0.0.1:11434/v1\".";
        }
        {
          assertion = mode != "reactive" || (builtins.elem "comms" a.triggers && rt.coordination.backend != "none");
          message = "keystone.os.agents.${name}.exec.mode = \"reactive\" is woken by messages: add \"comms\" to keystone.os.agents.${name}.triggers and set keystone.os.agentRuntime.coordination.backend (\"local\" or \"postgresql\"), or use mode \"timer\".";
        }
      ]) localNames;

    systemd.user.services = forCycled cycleService;
    systemd.user.timers = forCycled cycleTimer;
  };
}
