# Every option of keystone.os.agents.<name>, plus the few host-wide settings the agents share.
# Secrets are always absolute file paths (agenix: /run/agenix/..., sops-nix: /run/secrets/...), never values:
# a value would end up world-readable in the Nix store.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption types literalExpression;
  top = config;

  providers = [ "claude" "gemini" "codex" "command" "openai" ];
  efforts = [ "low" "medium" "high" "max" ];

  # An absolute path given as a string, so a Nix path literal (./secret) is refused instead of being copied into
  # the world-readable store.
  secretFile = description: mkOption {
    type = types.nullOr (types.strMatching "/.+");
    default = null;
    example = "/run/agenix/agent-drago-secret";
    inherit description;
  };

  nullStr = description: mkOption {
    type = types.nullOr types.str;
    default = null;
    inherit description;
  };

  policyTier = types.enum [ "autonomous" "notify" "approval_required" "blocked" ];
  policyRuleType = types.submodule {
    options = {
      match = mkOption {
        type = types.attrsOf types.str;
        example = { shell = "git push --force*"; };
        description = "What the rule matches; every key must hold: tool, shell, read, write, fetch, mcp, act, project (globs; docs/policy.md).";
      };
      tier = mkOption { type = policyTier; description = "autonomous, notify, approval_required or blocked."; };
    };
  };

  stageType = types.submodule {
    options = {
      profile = nullStr "Semantic profile (embedding, fast, medium, max, or one of `profiles`). null: inherit.";
      provider = mkOption {
        type = types.nullOr (types.enum (providers ++ [ "auto" ]));
        default = null;
        description = "Provider CLI that runs the stage. null: inherit.";
      };
      model = nullStr "Provider-specific model. null: from the profile.";
      fallbackModel = nullStr "Model for one retry after a model error (Claude only today). null: from the profile.";
      effort = mkOption {
        type = types.nullOr (types.enum efforts);
        default = null;
        description = "Reasoning effort (Claude only today). null: from the profile.";
      };
    };
  };

  providerProfileType = types.submodule {
    options = {
      model = nullStr "Model this profile selects for the provider.";
      fallbackModel = nullStr "Fallback model this profile selects for the provider.";
      effort = mkOption {
        type = types.nullOr (types.enum efforts);
        default = null;
        description = "Effort this profile selects for the provider.";
      };
    };
  };

  profileType = types.submodule {
    options = lib.genAttrs providers (provider: mkOption {
      type = providerProfileType;
      default = { };
      description = "What this profile means for the ${provider} provider.";
    });
  };

  sourceType = types.submodule {
    options = {
      name = mkOption {
        type = types.strMatching "[A-Za-z0-9][A-Za-z0-9._-]*";
        description = "Name of the source (appears in task source fields and events).";
      };
      command = mkOption {
        type = types.either (types.strMatching ".+") (types.nonEmptyListOf types.str);
        description = "Command printing JSON: an argv list (preferred), or a string split like a shell would, without a shell.";
      };
      timeout = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        description = "Seconds before the source command is killed. null: the runtime's default.";
      };
      project = nullStr "Project slug given to this source's items.";
    };
  };

  endpointOptions = defaultPort: kind: {
    host = nullStr "${kind} server host name. Required when mail.address is set.";
    port = mkOption {
      type = types.port;
      default = defaultPort;
      description = "${kind} server port.";
    };
    security = mkOption {
      type = types.enum [ "tls" "starttls" "none" ];
      default = "tls";
      description = "Transport security: tls (implicit TLS), starttls, or none (loopback tests only).";
    };
  };

  mcpServerType = types.submodule {
    options = {
      command = mkOption {
        type = types.str;
        description = "Executable of the MCP server (stdio transport).";
      };
      args = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Arguments of the MCP server.";
      };
      env = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Environment of the MCP server (no secrets: they would be world-readable in the store).";
      };
      envFiles = mkOption {
        type = types.attrsOf (types.strMatching "/.+");
        default = { };
        example = { FORGE_TOKEN = "/run/agenix/agent-drago-forgejo-token"; };
        description = "Secret environment of the MCP server: variable name to a file (readable by agent-<name>) whose content is read when a provider starts; never copied into the store or the config.";
      };
    };
  };

  hostOf = agent: if agent.host != null then agent.host else top.networking.hostName;

  agentModule = { name, config, ... }: {
    # the tools configured by tools.nix are on the agent's PATH
    config.extraPackages =
      lib.optional (config.tools.himalaya.enable && config.mail.address != null) pkgs.himalaya
      ++ lib.optional (config.tools.calendula.enable && config.tools.calendula.package != null) config.tools.calendula.package
      ++ lib.optional (config.tools.cardamum.enable && config.tools.cardamum.package != null) config.tools.cardamum.package
      ++ lib.optional (config.tools.bitwarden.serverUrl != null) pkgs.bitwarden-cli;

    options = {
      uid = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        description = ''
          UID of agent-<name>. null: 4001 + the agent's position among all agent names sorted alphabetically.
          Adding an agent whose name sorts earlier renumbers the automatic UIDs of the agents after it, so pin
          the UID once an agent's home holds data.
        '';
      };
      fullName = mkOption {
        type = types.str;
        default = name;
        defaultText = literalExpression "<name>";
        description = "Display name (user description, SOUL.md, git author name).";
      };
      email = nullStr "The agent's email address (git identity, mail From). null: mail.address.";
      host = nullStr "Host name the agent lives on. null: this host. On other hosts only agentctl knows the agent.";
      archetype = mkOption {
        type = types.enum [ "engineer" "product" ];
        default = "engineer";
        description = "Conventions archetype of the agent.";
      };

      ssh = {
        publicKey = mkOption {
          type = types.nullOr types.str;
          default = top.keystone.keys."agent-${name}".hosts.${hostOf config}.publicKey or null;
          defaultText = literalExpression ''keystone.keys."agent-<name>".hosts.<host>.publicKey or null'';
          description = "The agent's SSH public key (its commit signing key). Setting it turns on the ssh-agent with the agenix key files below.";
        };
        keyFile = mkOption {
          type = types.nullOr (types.strMatching "/.+");
          default = if config.ssh.publicKey != null then "/run/agenix/agent-${name}-ssh-key" else null;
          defaultText = literalExpression ''if ssh.publicKey != null then "/run/agenix/agent-<name>-ssh-key" else null'';
          description = "Private SSH key (ed25519) loaded into the agent's ssh-agent; readable by agent-<name>. null: no ssh-agent.";
        };
        passphraseFile = mkOption {
          type = types.nullOr (types.strMatching "/.+");
          default = if config.ssh.publicKey != null then "/run/agenix/agent-${name}-ssh-passphrase" else null;
          defaultText = literalExpression ''if ssh.publicKey != null then "/run/agenix/agent-<name>-ssh-passphrase" else null'';
          description = "Passphrase of keyFile; readable by agent-<name>. null: the key has no passphrase.";
        };
        signCommits = mkOption {
          type = types.bool;
          default = true;
          description = "Sign every commit of the agent (notes sync, coding subagent, provider CLIs) with ssh.publicKey (when set), through its ssh-agent.";
        };
      };

      desktop = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Headless Wayland desktop (labwc) reachable over VNC (wayvnc).";
        };
        resolution = mkOption {
          type = types.strMatching "[0-9]+x[0-9]+";
          default = "1920x1080";
          description = "Resolution of the headless output.";
        };
        vncPort = mkOption {
          type = types.nullOr types.port;
          default = null;
          description = "VNC port. null: 5901 + the agent's position among this host's desktop agents sorted by name.";
        };
        vncBind = mkOption {
          type = types.str;
          default = "127.0.0.1";
          description = "Address wayvnc listens on. The default keeps VNC on loopback (reach it through SSH: agentctl <agent> vnc).";
        };
        vncConfigFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/run/agenix/agent-drago-wayvnc.conf";
          description = ''
            A wayvnc configuration file (readable by agent-<name>, e.g. an agenix/sops secret) passed with --config;
            it must turn authentication on (enable_auth=true with username/password or rsa_private_key_file).
            Required when vncBind is not a loopback address.
          '';
        };
      };

      chrome = {
        enable = mkOption {
          type = types.bool;
          default = true;
          description = "Chromium with remote debugging on 127.0.0.1 (needs desktop.enable).";
        };
        debugPort = mkOption {
          type = types.nullOr types.port;
          default = null;
          description = "Remote debugging port. null: 9222 + the agent's position among this host's Chromium agents.";
        };
        mcp.enable = mkOption {
          type = types.bool;
          default = config.chrome.mcp.package != null;
          defaultText = literalExpression "chrome.mcp.package != null";
          description = "Offer the chrome-devtools MCP server (connected to this Chromium) to the provider CLIs. Enabled without a package, it is left out with a warning.";
        };
        mcp.package = mkOption {
          type = types.nullOr types.package;
          default = pkgs.chrome-devtools-mcp or null;
          defaultText = literalExpression "pkgs.chrome-devtools-mcp or null";
          description = ''
            The package providing bin/chrome-devtools-mcp. null (nixpkgs has none): the server is left out of the
            agent's MCP servers, with a warning.
          '';
        };
      };

      mail = {
        address = nullStr "Mailbox address. null: no email source and no replies by mail.";
        user = nullStr "IMAP/SMTP login. null: the address.";
        passwordFile = secretFile "Mail password (trailing newline stripped); readable by agent-<name>.";
        imap = endpointOptions 993 "IMAP";
        smtp = endpointOptions 465 "SMTP";
        folders = mkOption {
          type = types.listOf types.str;
          default = [ "INBOX" ];
          description = "IMAP folders read by the email source.";
        };
        caFile = mkOption {
          type = types.nullOr (types.strMatching "/.+");
          default = null;
          description = "Extra CA bundle for servers with a private CA.";
        };
      };

      calendar = {
        url = nullStr "CalDAV calendar URL. null: no calendar.";
        user = nullStr "CalDAV login. null: anonymous or from the URL.";
        passwordFile = secretFile "CalDAV password; readable by agent-<name>.";
        windowHours = mkOption {
          type = types.ints.positive;
          default = 24;
          description = "Calendar events starting within this many hours become tasks.";
        };
      };

      contacts = {
        url = nullStr "CardDAV address book URL (for cardamum). null: no contacts.";
        user = nullStr "CardDAV login. null: mail.user, else mail.address.";
        passwordFile = secretFile "CardDAV password; readable by agent-<name>. null: mail.passwordFile.";
      };

      tools = {
        himalaya.enable = mkOption {
          type = types.bool;
          default = config.mail.address != null;
          defaultText = literalExpression "mail.address != null";
          description = "himalaya (nixpkgs `himalaya`) on the agent's PATH, configured for its mailbox (~/.config/himalaya/config.toml from the mail options; the password read from mail.passwordFile). `agentctl <agent> email` uses it.";
        };
        calendula = {
          enable = mkOption {
            type = types.bool;
            default = false;
            description = "calendula (Pimalaya's CalDAV CLI) on the agent's PATH, configured from the calendar options. Off by default: calendula is not in nixpkgs; set tools.calendula.package.";
          };
          package = mkOption {
            type = types.nullOr types.package;
            default = pkgs.calendula or null;
            defaultText = literalExpression "pkgs.calendula or null";
            description = "The calendula package (e.g. from Pimalaya's flake: github:pimalaya/calendula).";
          };
        };
        cardamum = {
          enable = mkOption {
            type = types.bool;
            default = false;
            description = "cardamum (Pimalaya's CardDAV CLI) on the agent's PATH, configured from the contacts options. Off by default: cardamum is not in nixpkgs; set tools.cardamum.package.";
          };
          package = mkOption {
            type = types.nullOr types.package;
            default = pkgs.cardamum or null;
            defaultText = literalExpression "pkgs.cardamum or null";
            description = "The cardamum package (e.g. from Pimalaya's flake: github:pimalaya/cardamum).";
          };
        };
        bitwarden.serverUrl = nullStr "Vaultwarden (Bitwarden-compatible) server URL: `bw` (nixpkgs `bitwarden-cli`) goes on the agent's PATH and is pointed at it (`bw config server`). null: no bw.";
      };

      github = {
        username = nullStr "GitHub user whose notifications become tasks. null: no GitHub source.";
        tokenFile = secretFile "GitHub token; readable by agent-<name>. null: gh's own login.";
      };

      forgejo = {
        url = nullStr "Forgejo/Gitea base URL (https://git.example.com). null: no Forgejo source.";
        username = nullStr "Forgejo user. null: the agent's name.";
        tokenFile = secretFile "Forgejo API token; readable by agent-<name>.";
      };

      notes = {
        repo = nullStr "Remote of the notes repo (Forgejo's built-in SSH server wants ssh://forgejo@host:2222/owner/repo.git). null: no sync.";
        path = mkOption {
          type = types.strMatching "/.+";
          default = "/home/agent-${name}/notes";
          defaultText = literalExpression ''"/home/agent-<name>/notes"'';
          description = "Where the notes repo is checked out.";
        };
        sync = {
          onCalendar = mkOption {
            type = types.str;
            default = "*:0/5";
            description = "systemd OnCalendar of the notes sync timer.";
          };
          commitPrefix = mkOption {
            type = types.str;
            default = "vault sync";
            description = "Prefix of the sync commits' messages.";
          };
        };
        taskLoop = {
          onCalendar = mkOption {
            type = types.str;
            default = "*:0/5";
            description = "systemd OnCalendar of the task loop timer (Persistent=true: a missed run happens at boot).";
          };
          maxTasks = mkOption {
            type = types.ints.unsigned;
            default = 5;
            description = "Tasks executed per loop run at most.";
          };
          maxAttempts = mkOption {
            type = types.ints.positive;
            default = 3;
            description = "Failed executions before a task is marked blocked.";
          };
          timeout = mkOption {
            type = types.ints.positive;
            default = 1800;
            description = "Seconds one task execution may take. The loop unit's TimeoutStartSec is maxTasks × timeout + 900.";
          };
          stallTimeout = mkOption {
            type = types.ints.positive;
            default = 600;
            description = "Stall watchdog: seconds without output (stdout, stderr, the CLI's transcript) before a task is killed (outcome timeout, reason stalled).";
          };
          maxTurns = mkOption {
            type = types.nullOr types.ints.positive;
            default = null;
            description = "Deprecated alias of exec.maxIterations (used when that is null): tool calls per task execution.";
          };
          budgets = mkOption {
            type = types.attrsOf (types.nullOr types.number);
            default = { };
            example = literalExpression "{ dailyCostUsd = 20; monthlyTokens = 50000000; taskTokens = 2000000; }";
            description = "Spend ceilings checked before every provider call (keys taskTokens, taskCostUsd, dailyTokens, dailyCostUsd, monthlyTokens, monthlyCostUsd; UTC days and months). A task that would start over one stays pending.";
          };
          expectedInterval = mkOption {
            type = types.nullOr types.ints.positive;
            default = null;
            description = "Seconds between two runs of the task loop's timer, for missed-run detection. null: derived from onCalendar where it is a simple interval (*:0/N, hourly, daily, a fixed daily time, ...).";
          };
          defaults = mkOption {
            type = stageType;
            default = { };
            description = "Provider/profile/model defaults for every stage (all null: the runtime's built-ins, Claude).";
          };
          ingest = mkOption {
            type = stageType;
            default = { };
            description = "Ingest stage settings (built-in profile: fast).";
          };
          prioritize = mkOption {
            type = stageType;
            default = { };
            description = "Prioritize stage settings (built-in profile: fast).";
          };
          execute = mkOption {
            type = stageType;
            default = { };
            description = "Execute stage settings (built-in profile: medium). Task fields override them.";
          };
          profiles = mkOption {
            type = types.attrsOf profileType;
            default = { };
            example = literalExpression ''{ max.claude = { model = "opus"; effort = "max"; }; }'';
            description = "Semantic profiles merged key by key over the built-in catalog (embedding, fast, medium, max).";
          };
          sources = mkOption {
            type = types.listOf sourceType;
            default = [ ];
            description = "Extra pre-fetch sources, in addition to those of PROJECTS.yaml.";
          };
          environment = mkOption {
            type = types.attrsOf types.str;
            default = { };
            description = "Extra environment variables given to provider processes (no secrets: use *File options).";
          };
        };
        scheduler = {
          onCalendar = mkOption {
            type = types.str;
            default = "*-*-* 05:00:00";
            description = "systemd OnCalendar of the scheduler timer.";
          };
          horizonDays = mkOption {
            type = types.ints.unsigned;
            default = 7;
            description = "Missed schedule occurrences older than this many days are not caught up.";
          };
        };
      };

      triggers = mkOption {
        type = types.listOf (types.enum [ "schedule" "comms" "manual" ]);
        default = [ "schedule" "manual" ];
        example = [ "comms" "manual" ];
        description = ''
          What starts the agent's task loop: `schedule` (its timer), `comms` (a message from another agent or a
          human wakes it within a second: the comms path units; needs agentRuntime.coordination.backend), `manual`
          (agentctl run). An agent without `schedule` has no task-loop timer: it is purely reactive.
        '';
      };

      comms = {
        acceptFrom = mkOption {
          type = types.listOf types.str;
          default = [ "*" ];
          example = [ "luce" "admins" ];
          description = "Who may send this agent messages: agent names, `admins` (the humans of agentRuntime.admins), or `*` (any agent or admin of the bus).";
        };
        maxDepth = mkOption {
          type = types.ints.unsigned;
          default = 3;
          description = "Deepest delegation this agent accepts: a message sent by a task made from a message is one level deeper; deeper sends are refused.";
        };
        sendsPerHour = mkOption {
          type = types.ints.positive;
          default = 120;
          description = "Messages and asks this agent may send per hour (replies are not counted); more are refused.";
        };
      };

      role = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "coder";
        description = "The agent's role from the role catalog (researcher, coder, reviewer, planner, overseer, or one defined in `policy.roles`): the defaults of its policy tiers (docs/policy.md). null with an empty `policy`: no policy, the provider CLIs run without a pre-tool hook.";
      };

      policy = {
        default = mkOption {
          type = types.nullOr policyTier;
          default = null;
          description = "The tier of an action no rule matches (null: the role's default; no role: autonomous).";
        };
        rules = mkOption {
          type = types.listOf policyRuleType;
          default = [ ];
          example = literalExpression ''[ { match = { shell = "terraform apply*"; }; tier = "approval_required"; } { match = { write = "/srv/**"; project = "prod-*"; }; tier = "blocked"; } ]'';
          description = "The agent's and its projects' rules; the most restrictive matching rule wins (role rules included). Match keys: tool, shell, read, write, fetch, mcp, act, project (docs/policy.md).";
        };
        roles = mkOption {
          type = types.attrsOf (types.submodule {
            options = {
              default = mkOption { type = policyTier; default = "blocked"; description = "The role's default tier."; };
              toolDefaults = mkOption {
                type = types.attrsOf policyTier;
                default = { };
                description = "The default tier of one kind of action (shell, file.read, file.write, web.fetch, mcp, act).";
              };
              description = mkOption { type = types.str; default = ""; description = "What the role is for."; };
              rules = mkOption { type = types.listOf policyRuleType; default = [ ]; description = "The role's rules."; };
            };
          });
          default = { };
          description = "Roles defined or overridden for this agent (each replaces a built-in role of the same name).";
        };
      };

      shared.writePrefixes = mkOption {
        type = types.listOf types.str;
        default = [ "" ];
        example = [ "deploy/" "status/luce/" ];
        description = "Shared-state keys this agent may write or delete (`keystone-agent shared set|delete`): key prefixes, `\"\"` meaning every key. Every agent reads every key (docs/shared-state.md).";
      };

      postgres = {
        clientCertFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "TLS client certificate (CN = agent-<name>) for a PostgreSQL bus on another host. A path read at runtime, never copied to the store.";
        };
        clientKeyFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "The client certificate's private key (readable by agent-<name> only).";
        };
      };

      exec = {
        mode = mkOption {
          type = types.enum [ "timer" "reactive" "autonomous" "proactive" "tick" ];
          default = "timer";
          description = ''
            How the agent is woken (docs/exec-modes.md). `timer`: the task-loop timer (the default). `reactive`:
            woken by messages (needs comms). `autonomous`: a task whose report says `"status": "continue"` resumes
            the same CLI session, up to `maxAutoTurns`. `proactive`: a think timer every `thinkInterval` seconds
            runs `keystone-agent loop --trigger think`, which calls a model only when its briefing is not empty.
            `tick`: one cycle every `thinkInterval` seconds with a local provider, until the agent reports
            `"status": "end_tick"`.
          '';
        };
        maxIterations = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          description = "Tool calls per execution (claude --max-turns, gemini maxSessionTurns, and counted in every CLI's event stream); at the limit the execution is stopped with outcome max_iterations. null: notes.taskLoop.maxTurns (deprecated alias), else no limit.";
        };
        maxAutoTurns = mkOption {
          type = types.ints.positive;
          default = 1;
          description = "Autonomous mode: continuations of the same CLI session before the task is blocked with reason max-auto-turns.";
        };
        maxContextTokens = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          description = "Tokens one task execution may use (the task token budget).";
        };
        thinkInterval = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          description = "Seconds between think cycles (proactive) or ticks (tick); required by those modes.";
        };
        maxQuietSeconds = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          description = "Proactive: think even with an empty briefing when the last model call of a think cycle is this old. null: never (an idle think cycle costs 0 tokens).";
        };
        timeout = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
          description = "Session deadline in seconds of a proactive or tick agent, from its first cycle; then its think/tick timer stops itself. 0 or null: none.";
        };
        instructions = mkOption {
          type = types.nullOr types.lines;
          default = null;
          description = "Standing instructions of a proactive or tick agent (null: notes/INSTRUCTIONS.md).";
        };
        watchPrefixes = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Shared-state key prefixes this agent watches: a write under one by another agent wakes it like a message (its comms path unit; a reactive/timer agent gets a task per changed key) and goes into the proactive briefing.";
        };
      };

      mcp.servers = mkOption {
        type = types.attrsOf mcpServerType;
        default = { };
        example = literalExpression ''{ deepwork = { command = "deepwork"; args = [ "serve" "--path" "." ]; }; }'';
        description = "MCP servers offered to the provider CLIs, in addition to chrome-devtools.";
      };

      extraPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
        description = "Packages in the agent's profile, hence on the PATH of its shell and of its units.";
      };

      settings = mkOption {
        type = types.attrsOf types.anything;
        default = { };
        example = { coding.workflows = [ "sweng/sweng" ]; workflowRules = [ { keywords = [ "press release" ]; workflow = "press_release/write"; } ]; };
        description = ''
          Runtime configuration merged (recursively) over what the options above generate: any key of the
          runtime's config schema (docs/configuration.md), for settings without a dedicated option, such as
          `coding`, `workflowRules`, `runtimeRules`, `llmTriage`, `commandProvider`, `openaiProvider`,
          `archiveAfterDays` or `mail.maxPerRun`. Secrets stay file paths. An unknown key or a wrong type is
          reported by `keystone-agent validate` and stops the agent's runs with a message naming the key.
        '';
      };
    };
  };
in
{
  options.keystone.os = {
    agents = mkOption {
      type = types.attrsOf (types.submodule agentModule);
      default = { };
      description = "Autonomous agents, each a locked-down user agent-<name>.";
    };

    agentRuntime = {
      package = mkOption {
        type = types.package;
        default = pkgs.callPackage ../../../nix/package.nix { };
        defaultText = literalExpression "pkgs.callPackage ./nix/package.nix { }";
        description = "The keystone-agents package (keystone-agent and agentctl).";
      };
      admins = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "alice" ];
        description = "Human users added to agent-admins: they can read agent homes and steer agents with agentctl.";
      };
      agentsGid = mkOption {
        type = types.ints.between 1000 65533;
        default = 4000;
        description = "GID of the group `agents` (every agent's primary group). Fixed, so that files can be owned by GID where names are not resolved (overlay /etc, userborn).";
      };
      adminsGid = mkOption {
        type = types.ints.between 1000 65533;
        default = 4099;
        description = "GID of the group `agent-admins`. Fixed, so that the agents' config files under /etc are owned by GID as well as by name (with the overlay /etc or userborn, names are ignored).";
      };
      generatedScripts = mkOption {
        type = types.attrsOf types.package;
        default = { };
        internal = true;
        description = "Scripts the module generates for units, by name (for the evaluation tests, which run them).";
      };
      coordination = {
        backend = mkOption {
          type = types.enum [ "none" "local" "postgresql" ];
          default = "none";
          description = ''
            The bus agents coordinate over (comms: messages, ask and reply). `local`: one host, a small broker
            (keystone-bus.socket) that alone owns an SQLite file and knows callers by their uid. `postgresql`:
            agents on several hosts (or one host with PostgreSQL); each agent user is its database role.
          '';
        };
        maxDeliveries = mkOption {
          type = types.ints.positive;
          default = 5;
          description = "A message delivered this many times without becoming a task is dead-lettered (event message_dead_lettered, metric, alert).";
        };
        leaseSeconds = mkOption {
          type = types.ints.positive;
          default = 300;
          description = "How long a claimed message is invisible to other drains before it is redelivered.";
        };
        shared = {
          maxValueBytes = mkOption {
            type = types.ints.positive;
            default = 65536;
            description = "The largest shared-state value (its JSON text, UTF-8); larger writes are refused.";
          };
          quotaBytes = mkOption {
            type = types.ints.positive;
            default = 524288000;
            description = "The total size of all current shared-state keys and values; a write that would exceed it is refused.";
          };
        };
        auditAnchor = {
          onCalendar = mkOption {
            type = types.str;
            default = "hourly";
            description = "When keystone-audit-anchor.timer records the audit log's head in the journal and as the metric keystone_audit_head_seq (`keystone-agent audit anchor`; docs/audit.md).";
          };
          user = mkOption {
            type = types.nullOr types.str;
            default = null;
            description = "The admin the anchor runs as (null: root for the local broker, the first of agentRuntime.admins for PostgreSQL; with neither, a PostgreSQL host gets no anchor timer).";
          };
        };
        postgresql = {
          createLocally = mkOption {
            type = types.bool;
            default = true;
            description = "This host runs the bus database (services.postgresql, the keystone database, a role per agent and admin).";
          };
          database = mkOption {
            type = types.str;
            default = "keystone";
            description = "Database name.";
          };
          host = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "db.example.org";
            description = "The database host for agents of this host (null: the local socket /run/postgresql with peer authentication).";
          };
          port = mkOption {
            type = types.port;
            default = 5432;
            description = "The database port.";
          };
          allowedNetworks = mkOption {
            type = types.listOf types.str;
            default = [ ];
            example = [ "10.0.0.0/24" ];
            description = "Networks from which agents of other hosts connect (TLS with client certificates: `hostssl … cert`).";
          };
          caFile = mkOption {
            type = types.nullOr types.str;
            default = null;
            description = "CA that signed the server's and the agents' client certificates (remote agents).";
          };
        };
      };
      configDir = mkOption {
        type = types.strMatching "/etc/.+";
        default = "/etc/keystone-agents";
        description = "Where the agents' runtime configs (agents/<name>.json) and agentctl's host config (agentctl.json) are written.";
      };
    };

    observability.nodeExporter.textfileDirectory = mkOption {
      type = types.strMatching "/.+";
      default = "/var/lib/prometheus-node-exporter";
      description = "node_exporter textfile collector directory the agents write their .prom files to.";
    };
  };
}
