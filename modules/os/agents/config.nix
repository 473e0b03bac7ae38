# The runtime configuration of each local agent: one JSON file that `keystone-agent --config` reads. It must
# validate against python/keystone_agents/schemas/config.schema.json (a test checks the module's output).
# Readable by the agent and agent-admins only; it holds secret *paths*, never secrets.
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg localNames dropNulls;
  inherit (lib) mkIf listToAttrs nameValuePair filterAttrs mapAttrs;

  stage = s: dropNulls { inherit (s) profile provider model fallbackModel effort; };

  profile = p: filterAttrs (_: v: v != { })
    (mapAttrs (_: pp: dropNulls { inherit (pp) model fallbackModel effort; }) p);

  source = s: dropNulls { inherit (s) name command timeout project; };

  endpoint = e: { inherit (e) host port security; };

  mcpServers = name:
    let a = cfg.${name}; in
    lib.optionalAttrs (L.chromeMcpOn name) {
      chrome-devtools = {
        command = "${a.chrome.mcp.package}/bin/chrome-devtools-mcp";
        args = [ "--browserUrl" "http://127.0.0.1:${toString (L.chromePortOf name)}" ];
        env = { };
      };
    }
    // lib.optionalAttrs (config.keystone.os.agentRuntime.coordination.backend != "none") {
      # comms for provider sessions: comms_send, comms_ask, comms_reply, comms_inbox (as the agent)
      keystone = {
        command = "${config.keystone.os.agentRuntime.package}/bin/keystone-agent";
        args = [ "mcp" "serve" "--config" (L.configPath name) ];
        env = { };
      };
    }
    // mapAttrs (_: s: { inherit (s) command args env; } // lib.optionalAttrs (s.envFiles != { }) { inherit (s) envFiles; })
      a.mcp.servers;

  runtimeConfig = name:
    let a = cfg.${name}; in
    {
      agentName = name;
      inherit (a) fullName archetype;
      email = if a.email != null then a.email else a.mail.address;
      host = L.hostOf name;
      notesDir = a.notes.path;
      inherit (a.notes.taskLoop) maxTasks maxAttempts;
      taskTimeoutSeconds = a.notes.taskLoop.timeout;
      stallTimeoutSeconds = a.notes.taskLoop.stallTimeout;
      maxTurns = a.notes.taskLoop.maxTurns;
      exec = dropNulls {
        inherit (a.exec) mode maxIterations maxAutoTurns maxContextTokens thinkInterval maxQuietSeconds timeout
          instructions watchPrefixes;
      };
      budgets = a.notes.taskLoop.budgets;
      expectedIntervalSeconds =
        if a.notes.taskLoop.expectedInterval != null then a.notes.taskLoop.expectedInterval
        else L.calendarInterval a.notes.taskLoop.onCalendar;
      defaults = stage a.notes.taskLoop.defaults;
      ingest = stage a.notes.taskLoop.ingest;
      prioritize = stage a.notes.taskLoop.prioritize;
      execute = stage a.notes.taskLoop.execute;
      profiles = mapAttrs (_: profile) a.notes.taskLoop.profiles;
      sources = map source a.notes.taskLoop.sources;
      textfileDir = L.textfileDir;
      notes = {
        inherit (a.notes) repo;
        inherit (a.notes.sync) commitPrefix;
        signingKey = if a.ssh.signCommits then a.ssh.publicKey else null;
      };
      # one git identity for every commit (keystone-agent configure, notes sync, coding subagent, providers)
      git.signingKey = if a.ssh.signCommits then a.ssh.publicKey else null;
      mail =
        if a.mail.address == null then null
        else {
          inherit (a.mail) address user passwordFile folders caFile;
          imap = endpoint a.mail.imap;
          smtp = endpoint a.mail.smtp;
        };
      calendar =
        if a.calendar.url == null then null
        else { inherit (a.calendar) url user passwordFile windowHours; };
      github =
        if a.github.username == null then null
        else { inherit (a.github) username tokenFile; };
      forgejo =
        if a.forgejo.url == null then null
        else {
          inherit (a.forgejo) url tokenFile;
          username = if a.forgejo.username != null then a.forgejo.username else name;
        };
      scheduler = {
        inherit (a.notes.scheduler) horizonDays;
        expectedIntervalSeconds = L.calendarInterval a.notes.scheduler.onCalendar;
      };
      environment = a.notes.taskLoop.environment;
      mcpServers = mcpServers name;
      coordination = L.coordinationOf;
    } // lib.optionalAttrs (a.role != null || a.policy.rules != [ ] || a.policy.default != null || a.policy.roles != { }) {
      # the policy: the hooks read the root-owned rendering (policy.nix), never this agent-readable copy
      inherit (a) role;
      policy = lib.filterAttrs (_: v: v != null) { inherit (a.policy) default rules roles; };
      policyFile = L.policyPath name;
    };
in
{
  config = mkIf (cfg != { }) {
    environment.etc = listToAttrs (map (name: nameValuePair (lib.removePrefix "/etc/" (L.configPath name)) {
      text = builtins.toJSON (lib.recursiveUpdate (runtimeConfig name) cfg.${name}.settings);
      mode = "0440";
      # by name and by number: with the overlay /etc (system.etc.overlay) or userborn only uid/gid count, and
      # a file left at root:root 0440 could not be read by its agent
      user = L.userOf name;
      group = "agent-admins";
      uid = L.uidOf name;
      gid = config.keystone.os.agentRuntime.adminsGid;
    }) localNames);

    warnings = lib.concatMap (name:
      let a = cfg.${name}; in
      lib.optional (L.chromeOn name && a.chrome.mcp.enable && a.chrome.mcp.package == null)
        "keystone.os.agents.${name}: the chrome-devtools MCP server is left out: this nixpkgs has no chrome-devtools-mcp package; set keystone.os.agents.${name}.chrome.mcp.package to one, or chrome.mcp.enable = false to silence this.")
      localNames;
  };
}
