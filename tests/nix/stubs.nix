# Minimal stand-in declarations of the NixOS options the agents module sets or reads, typed like NixOS's own
# (nixos/modules/config/users-groups.nix, system/boot/systemd.nix, security/sudo.nix, system/etc/etc.nix,
# misc/assertions.nix, ...), so the module is evaluated by nixpkgs' real module system without all of NixOS.
{ lib, ... }:
let
  inherit (lib) mkOption types mkIf mkDefault;

  unitValue = types.oneOf [ types.bool types.int types.str (types.listOf (types.oneOf [ types.bool types.int types.str ])) ];
  unitNames = mkOption { type = types.listOf types.str; default = [ ]; };

  serviceType = types.submodule {
    options = {
      description = mkOption { type = types.str; default = ""; };
      wantedBy = unitNames;
      requiredBy = unitNames;
      after = unitNames;
      before = unitNames;
      requires = unitNames;
      wants = unitNames;
      bindsTo = unitNames;
      partOf = unitNames;
      environment = mkOption { type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ])); default = { }; };
      path = mkOption { type = types.listOf types.package; default = [ ]; };
      script = mkOption { type = types.lines; default = ""; };
      serviceConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
      unitConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
      restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    };
  };

  timerType = types.submodule {
    options = {
      description = mkOption { type = types.str; default = ""; };
      wantedBy = unitNames;
      timerConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
      unitConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
    };
  };

  userType = types.submodule ({ name, config, ... }: {
    options = {
      name = mkOption { type = types.str; default = name; };
      uid = mkOption { type = types.nullOr types.int; default = null; };
      group = mkOption { type = types.str; default = ""; };
      extraGroups = mkOption { type = types.listOf types.str; default = [ ]; };
      isNormalUser = mkOption { type = types.bool; default = false; };
      isSystemUser = mkOption { type = types.bool; default = false; };
      description = mkOption { type = types.str; default = ""; };
      home = mkOption { type = types.str; default = "/var/empty"; };
      homeMode = mkOption { type = types.strMatching "[0-7]{1,5}"; default = "700"; };
      createHome = mkOption { type = types.bool; default = false; };
      linger = mkOption { type = types.bool; default = false; };
      hashedPassword = mkOption { type = types.nullOr types.str; default = null; };
      packages = mkOption { type = types.listOf types.package; default = [ ]; };
    };
    # as NixOS does for normal users
    config = mkIf config.isNormalUser {
      home = mkDefault "/home/${name}";
      createHome = mkDefault true;
    };
  });

  groupType = types.submodule {
    options = {
      gid = mkOption { type = types.nullOr types.int; default = null; };
      members = mkOption { type = types.listOf types.str; default = [ ]; };
    };
  };

  sudoRuleType = types.submodule {
    options = {
      users = mkOption { type = types.listOf (types.either types.str types.int); default = [ ]; };
      groups = mkOption { type = types.listOf (types.either types.str types.int); default = [ ]; };
      host = mkOption { type = types.str; default = "ALL"; };
      runAs = mkOption { type = types.str; default = "ALL:ALL"; };
      commands = mkOption {
        type = types.listOf (types.either types.str (types.submodule {
          options = {
            command = mkOption { type = types.str; };
            options = mkOption { type = types.listOf (types.enum [ "NOPASSWD" "PASSWD" "NOEXEC" "EXEC" "SETENV" "NOSETENV" "LOG_INPUT" "NOLOG_INPUT" "LOG_OUTPUT" "NOLOG_OUTPUT" ]); default = [ ]; };
          };
        }));
      };
    };
  };

  etcType = types.submodule ({ name, ... }: {
    options = {
      target = mkOption { type = types.str; default = name; };
      text = mkOption { type = types.nullOr types.lines; default = null; };
      source = mkOption { type = types.nullOr types.path; default = null; };
      mode = mkOption { type = types.str; default = "symlink"; };
      user = mkOption { type = types.str; default = "+0"; };
      group = mkOption { type = types.str; default = "+0"; };
    };
  });

  activationType = types.either types.str (types.submodule {
    options = {
      deps = mkOption { type = types.listOf types.str; default = [ ]; };
      text = mkOption { type = types.lines; };
      supportsDryActivation = mkOption { type = types.bool; default = false; };
    };
  });
in
{
  options = {
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; };
    networking.hostName = mkOption { type = types.str; default = "nixos"; };
    users.users = mkOption { type = types.attrsOf userType; default = { }; };
    users.groups = mkOption { type = types.attrsOf groupType; default = { }; };
    systemd.services = mkOption { type = types.attrsOf serviceType; default = { }; };
    systemd.user.services = mkOption { type = types.attrsOf serviceType; default = { }; };
    systemd.user.timers = mkOption { type = types.attrsOf timerType; default = { }; };
    systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
    security.sudo.extraRules = mkOption { type = types.listOf sudoRuleType; default = [ ]; };
    environment.etc = mkOption { type = types.attrsOf etcType; default = { }; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    system.activationScripts = mkOption { type = types.attrsOf activationType; default = { }; };
    # services.prometheus / services.grafana (nixos/modules/services/monitoring/prometheus, grafana.nix)
    services.prometheus.enable = mkOption { type = types.bool; default = false; };
    services.prometheus.rules = mkOption { type = types.listOf types.str; default = [ ]; };
    services.prometheus.exporters.node = {
      enable = mkOption { type = types.bool; default = false; };
      enabledCollectors = mkOption { type = types.listOf types.str; default = [ ]; };
      extraFlags = mkOption { type = types.listOf types.str; default = [ ]; };
    };
    services.grafana.enable = mkOption { type = types.bool; default = false; };
    services.grafana.provision.enable = mkOption { type = types.bool; default = false; };
    services.grafana.provision.dashboards.settings.providers = mkOption {
      type = types.listOf (types.submodule {
        options = {
          name = mkOption { type = types.str; default = "default"; };
          type = mkOption { type = types.str; default = "file"; };
          folder = mkOption { type = types.str; default = ""; };
          options.path = mkOption { type = types.path; };
        };
      });
      default = [ ];
    };
  };
}
