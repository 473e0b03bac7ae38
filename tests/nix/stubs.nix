# Minimal stand-in declarations of the NixOS options the agents module sets or reads, typed like NixOS's own
# (nixos/modules/config/users-groups.nix, system/boot/systemd.nix, security/sudo.nix, security/sudo-rs.nix,
# system/etc/etc.nix, misc/assertions.nix, ...), so the module is evaluated by nixpkgs' real module system
# without all of NixOS. They keep the real constraints, so that what fails on NixOS fails here too:
# - users-groups.nix: user and group names are types.passwdEntry and abort the evaluation at 32 characters;
#   description and home are passwdEntry (no ':' or newline); a normal user with a UID below 1000 fails the
#   "Exactly one of isSystemUser and isNormalUser" assertion; UIDs and GIDs must be unique;
# - etc.nix: uid/gid (default 0), user/group default to "+<uid>"/"+<gid>"; with the overlay /etc or userborn
#   only uid/gid count (modelled by etcOwnership below);
# - sudo.nix/sudo-rs.nix: extraRules entries typed as in nixpkgs; execWheelOnly.
{ lib, config, ... }:
let
  inherit (lib) mkOption types mkIf mkDefault;
  nameOf = what: x: assert (builtins.stringLength x < 32 || abort "${what} '${x}' is longer than 31 characters which is not allowed!"); x;

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

  # NixOS's systemd.user.paths: pathConfig → [Path] (nixos/modules/system/boot/systemd/user.nix)
  pathType = types.submodule {
    options = {
      description = mkOption { type = types.str; default = ""; };
      wantedBy = unitNames;
      pathConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
      unitConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
    };
  };

  socketType = types.submodule {
    options = {
      description = mkOption { type = types.str; default = ""; };
      wantedBy = unitNames;
      listenStreams = mkOption { type = types.listOf types.str; default = [ ]; };
      socketConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
      unitConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
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
      name = mkOption { type = types.passwdEntry types.str; default = name; apply = nameOf "Username"; };
      uid = mkOption { type = types.nullOr types.int; default = null; };
      group = mkOption { type = types.str; default = ""; apply = nameOf "Group name"; };
      extraGroups = mkOption { type = types.listOf types.str; default = [ ]; };
      isNormalUser = mkOption { type = types.bool; default = false; };
      isSystemUser = mkOption { type = types.bool; default = false; };
      description = mkOption { type = types.passwdEntry types.str; default = ""; };
      home = mkOption { type = types.passwdEntry types.path; default = "/var/empty"; };
      homeMode = mkOption { type = types.strMatching "[0-7]{1,5}"; default = "700"; };
      createHome = mkOption { type = types.bool; default = false; };
      linger = mkOption { type = types.bool; default = false; };
      hashedPassword = mkOption { type = types.nullOr (types.passwdEntry types.str); default = null; };
      packages = mkOption { type = types.listOf types.package; default = [ ]; };
    };
    # as NixOS does for normal users
    config = mkIf config.isNormalUser {
      group = mkDefault "users";
      home = mkDefault "/home/${name}";
      createHome = mkDefault true;
    };
  });

  groupType = types.submodule ({ name, ... }: {
    options = {
      name = mkOption { type = types.passwdEntry types.str; default = name; };
      gid = mkOption { type = types.nullOr types.int; default = null; };
      members = mkOption { type = types.listOf (types.passwdEntry types.str); default = [ ]; };
    };
  });

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

  etcType = types.submodule ({ name, config, ... }: {
    options = {
      target = mkOption { type = types.str; default = name; };
      text = mkOption { type = types.nullOr types.lines; default = null; };
      source = mkOption { type = types.nullOr types.path; default = null; };
      mode = mkOption { type = types.str; default = "symlink"; };
      uid = mkOption { type = types.int; default = 0; };
      gid = mkOption { type = types.int; default = 0; };
      user = mkOption { type = types.str; default = "+${toString config.uid}"; };
      group = mkOption { type = types.str; default = "+${toString config.gid}"; };
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
    systemd.timers = mkOption { type = types.attrsOf timerType; default = { }; };
    systemd.user.paths = mkOption { type = types.attrsOf pathType; default = { }; };
    systemd.sockets = mkOption { type = types.attrsOf socketType; default = { }; };
    # services.postgresql (nixos/modules/services/databases/postgresql.nix), the options the module sets
    services.postgresql = {
      enable = mkOption { type = types.bool; default = false; };
      enableTCPIP = mkOption { type = types.bool; default = false; };
      ensureDatabases = mkOption { type = types.listOf types.str; default = [ ]; };
      ensureUsers = mkOption { type = types.listOf (types.submodule { options.name = mkOption { type = types.str; }; }); default = [ ]; };
      authentication = mkOption { type = types.lines; default = ""; };
      settings = mkOption { type = types.attrsOf unitValue; default = { }; };
    };
    systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
    security.sudo.enable = mkOption { type = types.bool; default = true; };
    security.sudo.execWheelOnly = mkOption { type = types.bool; default = false; };
    security.sudo.extraRules = mkOption { type = types.listOf sudoRuleType; default = [ ]; };
    security.sudo-rs.enable = mkOption { type = types.bool; default = false; };
    security.sudo-rs.execWheelOnly = mkOption { type = types.bool; default = false; };
    security.sudo-rs.extraRules = mkOption { type = types.listOf sudoRuleType; default = [ ]; };
    services.userborn.enable = mkOption { type = types.bool; default = false; };
    systemd.sysusers.enable = mkOption { type = types.bool; default = false; };
    system.etc.overlay.enable = mkOption { type = types.bool; default = false; };
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

  # users-groups.nix's own assertions (the ones an agent account can trip)
  config.assertions = lib.flatten (lib.mapAttrsToList (_: user: [
    {
      assertion = let isEffectivelySystemUser = user.isSystemUser || (user.uid != null && user.uid < 1000);
                  in (isEffectivelySystemUser && !user.isNormalUser) || (!isEffectivelySystemUser && user.isNormalUser);
      message = "Exactly one of users.users.${user.name}.isSystemUser and users.users.${user.name}.isNormalUser must be set.";
    }
    { assertion = user.group != ""; message = "users.users.${user.name}.group is unset."; }
  ]) config.users.users) ++ [
    {
      assertion = let ids = lib.filter (x: x != null) (lib.mapAttrsToList (_: u: u.uid) config.users.users);
                      gids = lib.filter (x: x != null) (lib.mapAttrsToList (_: g: g.gid) config.users.groups);
                  in lib.length (lib.unique ids) == lib.length ids && lib.length (lib.unique gids) == lib.length gids;
      message = "UIDs and GIDs must be unique!";
    }
    {
      # userborn and systemd-sysusers create users after the activation scripts ran on the first switch
      assertion = !(config.services.userborn.enable || config.systemd.sysusers.enable)
        || lib.all (s: !(builtins.isAttrs s) || !(lib.elem "users" s.deps || lib.elem "groups" s.deps))
             (lib.attrValues config.system.activationScripts);
      message = "stand-in for the first switch with userborn/systemd-sysusers: an activation script that needs the users runs before they exist.";
    }
  ];
}
