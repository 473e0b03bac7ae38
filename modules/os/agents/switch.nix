# What `nixos-rebuild switch` does for each agent's user units. NixOS itself only reloads a running user
# manager, so a timer added to an existing agent would not start before the next boot and a removed one would
# keep firing. One system unit per agent, agent-<name>-user-units, runs after every switch that changed the
# agent's user units (restartTriggers) and on boot:
#   1. loginctl enable-linger agent-<name>   (the user manager runs without a login; done here rather than with
#      users.users.<name>.linger, which on nixpkgs where it is a plain bool disables every other user's
#      imperative lingering);
#   2. waits for the user manager, then `systemctl --user daemon-reload` in it;
#   3. (re)starts every timer the agent has now, and stops its agent-<name>-*.timer units that are gone.
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg userOf uidOf;
  inherit (lib) mkIf listToAttrs nameValuePair filterAttrs attrNames concatStringsSep;

  prefix = name: "agent-${name}-";
  timersOf = name: attrNames (filterAttrs (unit: _: lib.hasPrefix (prefix name) unit) config.systemd.user.timers);
  userUnitsOf = name: {
    services = filterAttrs (unit: _: lib.hasPrefix (prefix name) unit) config.systemd.user.services;
    timers = filterAttrs (unit: _: lib.hasPrefix (prefix name) unit) config.systemd.user.timers;
  };

  script = name: pkgs.writeShellScript "agent-${name}-user-units" ''
    set -eu
    user=${userOf name}
    bus=/run/user/${toString (uidOf name)}/bus
    declared="${concatStringsSep " " (map (t: "${t}.timer") (timersOf name))}"
    ${pkgs.systemd}/bin/loginctl enable-linger "$user"
    for _ in $(${pkgs.coreutils}/bin/seq 300); do
      [ -S "$bus" ] && break
      ${pkgs.coreutils}/bin/sleep 0.1
    done
    if [ ! -S "$bus" ]; then
      echo "the user manager of $user did not start within 30 s" >&2
      exit 1
    fi
    user_systemctl() {
      ${pkgs.systemd}/bin/systemctl --user --machine="$user@" "$@"
    }
    user_systemctl daemon-reload
    for timer in $declared; do
      user_systemctl restart "$timer"
    done
    user_systemctl list-units --all --plain --no-legend --type=timer '${prefix name}*' |
      while read -r unit _; do
        case " $declared " in
          *" $unit "*) ;;
          *) user_systemctl stop "$unit" ;;
        esac
      done
  '';

  service = name: nameValuePair "agent-${name}-user-units" {
    description = "Lingering and user timers of agent ${name}, after boot and every switch";
    wantedBy = [ "multi-user.target" ];
    after = [ "systemd-logind.service" "systemd-user-sessions.service" ];
    wants = [ "systemd-logind.service" ];
    # a switch that changes the agent's user units restarts this unit, which applies them
    restartTriggers = [ (builtins.toJSON (userUnitsOf name)) ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${script name}";
    } // L.hardening.switchUnit;
  };
in
{
  config = mkIf (cfg != { }) {
    systemd.services = listToAttrs (map service L.localNames);
    keystone.os.agentRuntime.generatedScripts = listToAttrs (map (name: nameValuePair "agent-${name}-user-units" (script name)) L.localNames);
  };
}
