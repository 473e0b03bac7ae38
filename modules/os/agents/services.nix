# System services running as each local agent: its ssh-agent (key loaded from agenix/sops files), and when the
# desktop is on, headless labwc + wayvnc and Chromium with remote debugging on 127.0.0.1. They are system
# units with User= because a NixOS switch manages system units, not the units of a lingering user manager.
{ config, lib, pkgs, ... }:
let
  L = import ./lib.nix { inherit config lib pkgs; };
  inherit (L) cfg localNames userOf homeOf uidOf unitNames;
  inherit (lib) mkIf listToAttrs nameValuePair concatMap optionals optional;

  runtimeDir = name: "/run/user/${toString (uidOf name)}";

  # ssh-agent -D only creates the socket once it runs: wait for it, then add the key ($1). A passphrase is
  # answered by the askpass program from $KEYSTONE_SSH_PASSPHRASE_FILE (so the unit itself shows every path).
  sshAskpass = pkgs.writeShellScript "agent-ssh-askpass" ''
    exec ${pkgs.coreutils}/bin/cat "$KEYSTONE_SSH_PASSPHRASE_FILE"
  '';
  sshAddKey = pkgs.writeShellScript "agent-ssh-add" ''
    for _ in $(${pkgs.coreutils}/bin/seq 50); do
      [ -S "$SSH_AUTH_SOCK" ] && break
      ${pkgs.coreutils}/bin/sleep 0.1
    done
    exec ${pkgs.openssh}/bin/ssh-add "$1" </dev/null
  '';

  sshServices = name:
    let a = cfg.${name}; in
    optional (a.ssh.keyFile != null) (nameValuePair (unitNames name).sshAgent {
      description = "SSH agent of agent ${name}";
      # the agent's user manager — hence its notes sync, task loop and scheduler — starts once the key is
      # loaded (user units cannot order themselves after a system unit; their manager can)
      wantedBy = [ "multi-user.target" "user@${toString (uidOf name)}.service" ];
      before = [ "user@${toString (uidOf name)}.service" ];
      after = [ "network.target" ];
      unitConfig.RequiresMountsFor = homeOf name;
      environment = {
        SSH_AUTH_SOCK = L.sshSocketOf name;
      } // lib.optionalAttrs (a.ssh.passphraseFile != null) {
        SSH_ASKPASS = "${sshAskpass}";
        SSH_ASKPASS_REQUIRE = "force";
        DISPLAY = "none";
        KEYSTONE_SSH_PASSPHRASE_FILE = a.ssh.passphraseFile;
      };
      serviceConfig = {
        User = userOf name;
        Group = "agents";
        RuntimeDirectory = "agent-${name}-ssh-agent";
        RuntimeDirectoryMode = "0700";
        ExecStart = "${pkgs.openssh}/bin/ssh-agent -D -a ${L.sshSocketOf name}";
        ExecStartPost = "${sshAddKey} ${a.ssh.keyFile}";
        Restart = "always";
        RestartSec = 5;
      } // L.hardening.sshAgent;
    });

  desktopScripts = name: {
    waitForWayland = pkgs.writeShellScript "agent-${name}-wait-wayland" ''
      for _ in $(${pkgs.coreutils}/bin/seq 100); do
        [ -S ${runtimeDir name}/wayland-0 ] && exit 0
        ${pkgs.coreutils}/bin/sleep 0.1
      done
      echo "wayland-0 did not appear in ${runtimeDir name} within 10 s" >&2
      exit 1
    '';
  };

  desktopServices = name:
    let
      a = cfg.${name};
      u = unitNames name;
      labwcConfig = pkgs.writeTextDir "autostart" ''
        ${pkgs.wlr-randr}/bin/wlr-randr --output HEADLESS-1 --custom-mode ${a.desktop.resolution}
      '';
      inherit (desktopScripts name) waitForWayland;
      common = {
        User = userOf name;
        Group = "agents";
        WorkingDirectory = homeOf name;
        Restart = "on-failure";
        RestartSec = 5;
      };
      waylandEnv = {
        XDG_RUNTIME_DIR = runtimeDir name;
        WAYLAND_DISPLAY = "wayland-0";
      };
    in
    optionals a.desktop.enable ([
      (nameValuePair u.labwc {
        description = "Headless Wayland desktop (labwc) of agent ${name}";
        wantedBy = [ "multi-user.target" ];
        # the user manager (lingering) owns /run/user/<uid>
        after = [ "user@${toString (uidOf name)}.service" ];
        requires = [ "user@${toString (uidOf name)}.service" ];
        environment = {
          XDG_RUNTIME_DIR = runtimeDir name;
          WLR_BACKENDS = "headless";
          WLR_RENDERER = "pixman";
          WLR_HEADLESS_OUTPUTS = "1";
          WLR_LIBINPUT_NO_DEVICES = "1";
        };
        serviceConfig = common // L.hardening.labwc name // { ExecStart = "${pkgs.labwc}/bin/labwc -C ${labwcConfig}"; };
      })
      (nameValuePair u.wayvnc {
        description = "VNC server of agent ${name}'s desktop";
        wantedBy = [ "multi-user.target" ];
        after = [ "${u.labwc}.service" ];
        bindsTo = [ "${u.labwc}.service" ];
        environment = waylandEnv;
        serviceConfig = common // L.hardening.wayvnc name // {
          ExecStartPre = "${waitForWayland}";
          ExecStart = lib.concatStringsSep " " ([ "${pkgs.wayvnc}/bin/wayvnc" ]
            ++ lib.optional (a.desktop.vncConfigFile != null) "--config=${a.desktop.vncConfigFile}"
            ++ [ a.desktop.vncBind (toString (L.vncPortOf name)) ]);
        };
      })
    ] ++ optional (L.chromeOn name) (nameValuePair u.chromium {
      description = "Chromium of agent ${name} (remote debugging on 127.0.0.1)";
      wantedBy = [ "multi-user.target" ];
      after = [ "${u.labwc}.service" ];
      bindsTo = [ "${u.labwc}.service" ];
      environment = waylandEnv;
      serviceConfig = common // L.hardening.chromium name // {
        ExecStartPre = "${waitForWayland}";
        ExecStart = lib.concatStringsSep " " [
          "${pkgs.chromium}/bin/chromium"
          "--user-data-dir=${homeOf name}/.config/chromium-agent"
          "--remote-debugging-port=${toString (L.chromePortOf name)}"
          "--remote-debugging-address=127.0.0.1"
          "--no-first-run"
          "--no-default-browser-check"
          "--disable-gpu"
          "--ozone-platform=wayland"
        ];
      };
    }));
in
{
  config = mkIf (cfg != { }) {
    systemd.services = listToAttrs (concatMap (name: sshServices name ++ desktopServices name) localNames);
    keystone.os.agentRuntime.generatedScripts = listToAttrs (concatMap (name:
      let
        ssh = lib.optionalAttrs (cfg.${name}.ssh.keyFile != null) ({ inherit sshAddKey; }
          // lib.optionalAttrs (cfg.${name}.ssh.passphraseFile != null) { inherit sshAskpass; });
        desktop = lib.optionalAttrs cfg.${name}.desktop.enable (desktopScripts name);
      in
      lib.mapAttrsToList (_: script: nameValuePair script.name script) (ssh // desktop)) localNames);
  };
}
