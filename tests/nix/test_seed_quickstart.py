"""Issue 15: the seed's quick start, verbatim, evaluates and gives a working agent — the keys registry, the
ssh-agent loading the agenix key with its passphrase, the notes sync ordered after it with SSH_AUTH_SOCK, the git
identity service, and the configuration of the agent's own tools (himalaya, calendula, cardamum, bw)."""

from __future__ import annotations

import tomllib

from keystone_agents.config import parse_config
from keystone_agents.schemas import validator

# The seed's quick start (seeds/004), verbatim.
SEED_QUICK_START = """
keystone.os.agents.drago = {
fullName = "Drago";
email = "drago@example.com";
ssh.publicKey = "ssh-ed25519 AAAAC3... agent-drago";
notes.repo = "ssh://forgejo@git.example.com:2222/drago/notes.git";
};
# SSH public key is registered in the keys registry, not on the agent
keystone.keys."agent-atlas".hosts.myhost.publicKey = "ssh-ed25519 AAAAC3...";
"""

# agenix's `age.secrets` as ryantm/agenix (modules/age.nix) declares it: name, file, path (secretsDir/name),
# mode, owner, group, symlink.
AGENIX = """
{ lib, config, ... }: {
  options.age.secrets = lib.mkOption {
    type = lib.types.attrsOf (lib.types.submodule ({ config, name, ... }: {
      options = {
        name = lib.mkOption { type = lib.types.str; default = name; };
        file = lib.mkOption { type = lib.types.path; };
        path = lib.mkOption { type = lib.types.str; default = "/run/agenix/${config.name}"; };
        mode = lib.mkOption { type = lib.types.str; default = "0400"; };
        owner = lib.mkOption { type = lib.types.str; default = "0"; };
        group = lib.mkOption { type = lib.types.str; default = "0"; };
        symlink = lib.mkOption { type = lib.types.bool; default = true; };
      };
    }));
    default = { };
  };
}
"""

SOCKET = "/run/agent-drago-ssh-agent/agent.sock"


def module(body: str, imports: str = "") -> str:
    return "{ imports = [ " + imports + " ]; " + body + " }"


def test_the_seed_quick_start_evaluates_to_a_working_agent(evaluate):
    ev = evaluate(module(SEED_QUICK_START))
    assert ev["failedAssertions"] == []

    agent = ev["services"]["agent-drago-ssh-agent"]
    assert agent["serviceConfig"]["User"] == "agent-drago"
    assert agent["serviceConfig"]["ExecStart"].endswith(f"ssh-agent -D -a {SOCKET}")
    assert agent["serviceConfig"]["ExecStartPost"].endswith(" /run/agenix/agent-drago-ssh-key")
    assert agent["environment"]["KEYSTONE_SSH_PASSPHRASE_FILE"] == "/run/agenix/agent-drago-ssh-passphrase"
    assert agent["environment"]["SSH_ASKPASS_REQUIRE"] == "force"
    # the user manager (notes sync, loop, scheduler) starts after the key is loaded
    assert "user@4001.service" in agent["before"] and "user@4001.service" in agent["wantedBy"]
    assert agent["unitConfig"]["RequiresMountsFor"] == "/home/agent-drago"

    sync = ev["userServices"]["agent-drago-notes-sync"]
    assert sync["environment"]["SSH_AUTH_SOCK"] == SOCKET
    assert "/home/agent-drago" in sync["unitConfig"]["RequiresMountsFor"]
    assert sync["serviceConfig"]["ExecStart"].endswith("keystone-agent sync --config /etc/keystone-agents/agents/drago.json")

    git_config = ev["services"]["agent-drago-git-config"]
    assert git_config["serviceConfig"]["ExecStart"].endswith(
        "keystone-agent configure --config /etc/keystone-agents/agents/drago.json")
    assert git_config["serviceConfig"]["User"] == "agent-drago" and git_config["serviceConfig"]["Type"] == "oneshot"
    assert "user@4001.service" in git_config["before"]

    config = ev.agent_config("drago")
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator("config").iter_errors(config)] == []
    parsed = parse_config(config)
    assert parsed.git.signing_key == "ssh-ed25519 AAAAC3... agent-drago"
    assert parsed.notes.repo == "ssh://forgejo@git.example.com:2222/drago/notes.git"
    assert (parsed.full_name, parsed.email) == ("Drago", "drago@example.com")


def test_an_agent_key_can_come_from_the_keys_registry(evaluate):
    ev = evaluate("""{
      networking.hostName = "myhost";
      keystone.keys."agent-atlas".hosts.myhost.publicKey = "ssh-ed25519 AAAAC3NzaAtlas agent-atlas";
      keystone.keys."agent-atlas".hosts.otherhost.publicKey = "ssh-ed25519 AAAAC3NzaOther agent-atlas";
      keystone.os.agents.atlas = { };
      keystone.os.agents.bare = { };
    }""")
    assert ev["failedAssertions"] == []
    assert ev.agent_config("atlas")["git"]["signingKey"] == "ssh-ed25519 AAAAC3NzaAtlas agent-atlas"
    assert ev["services"]["agent-atlas-ssh-agent"]["serviceConfig"]["ExecStartPost"].endswith(
        "/run/agenix/agent-atlas-ssh-key")
    assert "agent-bare-ssh-agent" not in ev["services"]
    assert ev.agent_config("bare")["git"]["signingKey"] is None


def test_agenix_imported_without_the_secrets_says_which_to_declare(evaluate, tmp_path):
    agenix = tmp_path / "agenix.nix"
    agenix.write_text(AGENIX)
    ev = evaluate(module(SEED_QUICK_START, str(agenix)))
    [message] = ev["failedAssertions"]
    assert 'age.secrets."agent-drago-ssh-key" = { file = ./secrets/agent-drago-ssh-key.age; owner = "agent-drago"; };' in message
    assert 'age.secrets."agent-drago-ssh-passphrase"' in message
    declared = SEED_QUICK_START + """
      age.secrets."agent-drago-ssh-key" = { file = /dev/null; owner = "agent-drago"; };
      age.secrets."agent-drago-ssh-passphrase" = { file = /dev/null; owner = "agent-drago"; };
    """
    assert evaluate(module(declared, str(agenix)))["failedAssertions"] == []


def test_himalaya_is_configured_from_the_mail_options(evaluate):
    ev = evaluate(module(SEED_QUICK_START + """
      keystone.os.agents.drago.mail = {
        address = "drago@example.com";
        passwordFile = "/run/agenix/agent-drago-mail-password";
        imap.host = "mail.example.com";
        smtp = { host = "mail.example.com"; port = 587; security = "starttls"; };
      };
      keystone.os.agents.drago.tools.bitwarden.serverUrl = "https://vaultwarden.example.com";
    """))
    assert ev["failedAssertions"] == []
    etc = ev["etc"]["keystone-agents/agents/drago/himalaya.toml"]
    assert (etc["mode"], etc["user"], etc["group"]) == ("0440", "agent-drago", "agent-admins")
    account = tomllib.loads(etc["text"])["accounts"]["drago"]
    assert account["default"] is True and account["email"] == "drago@example.com"
    assert account["display-name"] == "Drago"
    assert account["backend"]["type"] == "imap" and account["backend"]["host"] == "mail.example.com"
    assert account["backend"]["port"] == 993 and account["backend"]["encryption"]["type"] == "tls"
    assert account["backend"]["login"] == "drago@example.com"
    assert account["backend"]["auth"] == {"type": "password",
                                          "cmd": "/stand-in/coreutils/bin/cat /run/agenix/agent-drago-mail-password"}
    send = account["message"]["send"]["backend"]
    assert (send["type"], send["port"], send["encryption"]["type"]) == ("smtp", 587, "start-tls")
    assert "L+ /home/agent-drago/.config/himalaya/config.toml - - - - /etc/keystone-agents/agents/drago/himalaya.toml" in ev["tmpfiles"]
    packages = ev["users"]["agent-drago"]["packages"]
    assert "himalaya" in packages and "bitwarden-cli" in packages
    post = ev["services"]["agent-drago-git-config"]["serviceConfig"]["ExecStartPost"]
    assert post == "/stand-in/bitwarden-cli/bin/bw config server https://vaultwarden.example.com"
    # the calendar and contacts tools are off by default: they are not in nixpkgs
    assert not any(name.endswith(("calendula.toml", "cardamum.toml")) for name in ev["etc"])


def test_calendula_and_cardamum_need_a_package_and_are_configured_from_dav_options(evaluate):
    body = SEED_QUICK_START + """
      keystone.os.agents.drago.mail = { address = "drago@example.com"; passwordFile = "/run/agenix/pw";
                                        imap.host = "mail.example.com"; smtp.host = "mail.example.com"; };
      keystone.os.agents.drago.calendar.url = "https://mail.example.com/dav/cal/drago/";
      keystone.os.agents.drago.contacts.url = "https://mail.example.com/dav/card/drago/";
      keystone.os.agents.drago.tools.calendula.enable = true;
      keystone.os.agents.drago.tools.cardamum.enable = true;
    """
    failed = evaluate(module(body))["failedAssertions"]
    assert any("calendula is not in nixpkgs; set keystone.os.agents.drago.tools.calendula.package" in m for m in failed)
    assert any("cardamum is not in nixpkgs" in m for m in failed)
    packaged = body + """
      keystone.os.agents.drago.tools.calendula.package = { type = "derivation"; name = "calendula"; outPath = "/x/calendula"; };
      keystone.os.agents.drago.tools.cardamum.package = { type = "derivation"; name = "cardamum"; outPath = "/x/cardamum"; };
    """
    ev = evaluate(module(packaged))
    assert ev["failedAssertions"] == []
    calendula = tomllib.loads(ev["etc"]["keystone-agents/agents/drago/calendula.toml"]["text"])["accounts"]["drago"]
    assert calendula["caldav"]["server"] == "https://mail.example.com/dav/cal/drago/"
    assert calendula["caldav"]["auth"]["basic"] == {"username": "drago@example.com",
                                                    "password": {"command": ["/stand-in/coreutils/bin/cat", "/run/agenix/pw"]}}
    cardamum = tomllib.loads(ev["etc"]["keystone-agents/agents/drago/cardamum.toml"]["text"])["accounts"]["drago"]
    assert cardamum["carddav"]["server"] == "https://mail.example.com/dav/card/drago/"
    assert {"calendula", "cardamum"} <= set(ev["users"]["agent-drago"]["packages"])
