# Observability of the agents (docs/observability.md): node_exporter's textfile collector reads the agents'
# .prom files; the host that runs Grafana gets the "Keystone Agents" dashboard, the host that runs
# Prometheus the alert rules, rendered from templates/prometheus/keystone-agents.rules.yml.in with the
# documented parameters below (the same names and defaults as keystone_agents.observability.RULE_PARAMETERS).
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkIf mkMerge types literalExpression;
  cfg = config.keystone.os.observability;
  obs = cfg.agents;
  templates = ../../../templates;
  dashboardDir = "grafana-dashboards/keystone-agents";

  # each @name@ of the template → the option's value (replaceStrings: exact tokens, nothing else touched)
  parameters = obs.alerts;
  names = builtins.attrNames parameters;
  renderedRules = builtins.replaceStrings
    (map (n: "@${n}@") names)
    (map (n: toString parameters.${n}) names)
    (builtins.readFile (templates + "/prometheus/keystone-agents.rules.yml.in"));
in
{
  options.keystone.os.observability = {
    nodeExporter.enable = mkOption {
      type = types.bool;
      default = false;
      description = "Run node_exporter (services.prometheus.exporters.node) with its textfile collector reading nodeExporter.textfileDirectory, where the agents write their metrics.";
    };

    agents = {
      grafana.enable = mkOption {
        type = types.bool;
        default = config.services.grafana.enable;
        defaultText = literalExpression "config.services.grafana.enable";
        description = "Provision the Keystone Agents dashboard (templates/grafana/keystone-agents.json) into services.grafana, folder \"Keystone\".";
      };
      prometheus.enable = mkOption {
        type = types.bool;
        default = config.services.prometheus.enable;
        defaultText = literalExpression "config.services.prometheus.enable";
        description = "Add the agents' alert rules (rendered with alerts.*) to services.prometheus.rules.";
      };
      alerts = {
        stalledAfterSeconds = mkOption {
          type = types.ints.positive;
          default = 7200;
          description = "KeystoneAgentStalled: seconds without a successful task-loop run (paused agents excepted).";
        };
        blockedThreshold = mkOption {
          type = types.ints.unsigned;
          default = 5;
          description = "KeystoneAgentBlockedSurge fires above this many blocked tasks (in TASKS.yaml or in the last run).";
        };
        tokenSpendThreshold = mkOption {
          type = types.ints.unsigned;
          default = 2000000;
          description = "KeystoneAgentTokenSpend fires when an agent used more tokens than this within tokenSpendWindow.";
        };
        tokenSpendWindow = mkOption {
          type = types.strMatching "([0-9]+(ms|s|m|h|d|w|y))+";
          default = "24h";
          description = "KeystoneAgentTokenSpend's window, a Prometheus duration.";
        };
        approvalPendingSeconds = mkOption {
          type = types.ints.positive;
          default = 1800;
          description = "KeystoneApprovalPending fires when an agent's action has waited longer than this for a human's approval (`agentctl approvals list`).";
        };
      };
      rulesText = mkOption {
        type = types.str;
        readOnly = true;
        default = renderedRules;
        defaultText = literalExpression "the rendered templates/prometheus/keystone-agents.rules.yml.in";
        description = "The alert rules as provisioned (read-only), e.g. for a Prometheus on another host.";
      };
    };
  };

  config = mkMerge [
    (mkIf cfg.nodeExporter.enable {
      services.prometheus.exporters.node = {
        enable = true;
        enabledCollectors = [ "textfile" ];
        extraFlags = [ "--collector.textfile.directory=${cfg.nodeExporter.textfileDirectory}" ];
      };
    })
    (mkIf obs.grafana.enable {
      environment.etc."${dashboardDir}/keystone-agents.json".source = templates + "/grafana/keystone-agents.json";
      services.grafana.provision = {
        enable = true;
        dashboards.settings.providers = [{
          name = "keystone-agents";
          folder = "Keystone";
          type = "file";
          options.path = "/etc/${dashboardDir}";
        }];
      };
    })
    (mkIf obs.prometheus.enable {
      services.prometheus.rules = [ renderedRules ];
    })
  ];
}
