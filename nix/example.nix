# The complete example of docs/nixos.md (kept identical by a test): host "ocean" runs the engineering agent
# drago; the product agent luce lives on the VPS "vps1" (the same file is imported there), so on ocean only
# agentctl knows luce. Secrets are agenix paths; see docs/nixos.md for each secret's owner.
{ ... }:
{
  networking.hostName = "ocean";

  keystone.os.agentRuntime.admins = [ "alice" ];

  keystone.os.agents.drago = {
    fullName = "Kumquat Drago";
    email = "drago@example.com";
    archetype = "engineer";
    ssh = {
      publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyExampleKeyExampleKeyExample agent-drago";
      keyFile = "/run/agenix/agent-drago-ssh-key";
      passphraseFile = "/run/agenix/agent-drago-ssh-passphrase";
    };
    desktop.resolution = "1920x1080";
    mail = {
      address = "drago@example.com";
      passwordFile = "/run/agenix/agent-drago-mail-password";
      imap.host = "mail.example.com";
      smtp.host = "mail.example.com";
    };
    calendar = {
      url = "https://mail.example.com/dav/cal/drago/default/";
      user = "drago@example.com";
      passwordFile = "/run/agenix/agent-drago-mail-password";
    };
    github = {
      username = "kdrgo";
      tokenFile = "/run/agenix/agent-drago-github-token";
    };
    forgejo = {
      url = "https://git.example.com";
      username = "drago";
      tokenFile = "/run/agenix/agent-drago-forgejo-token";
    };
    notes = {
      repo = "ssh://forgejo@git.example.com:2222/drago/notes.git";
      taskLoop = {
        onCalendar = "*:0/5";
        maxTasks = 3;
        defaults = { provider = "claude"; profile = "medium"; };
        ingest = { provider = "gemini"; profile = "fast"; };
        execute = { profile = "max"; fallbackModel = "opus"; };
        profiles.max = {
          claude = { model = "opus"; effort = "max"; };
          gemini.model = "auto-gemini-3";
        };
        sources = [
          { name = "ci-failures"; command = [ "ci-report" "--json" "--failed" ]; timeout = 60; project = "infra"; }
        ];
      };
      scheduler.onCalendar = "*-*-* 05:00:00";
    };
    mcp.servers.deepwork = { command = "deepwork"; args = [ "serve" "--path" "." "--platform" "claude" ]; };
  };

  keystone.os.agents.luce = {
    host = "vps1";
    fullName = "Luce";
    email = "luce@example.com";
    archetype = "product";
    ssh = {
      publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyExampleKeyExampleKeyExampleL agent-luce";
      keyFile = "/run/agenix/agent-luce-ssh-key";
      passphraseFile = "/run/agenix/agent-luce-ssh-passphrase";
    };
    desktop.enable = false;
    chrome.enable = false;
    forgejo.url = "https://git.example.com";
    notes.repo = "ssh://forgejo@git.example.com:2222/luce/notes.git";
  };
}
