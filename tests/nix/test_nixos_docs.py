"""docs/nixos.md keeps up with the module: the generated option table, the example, and the secrets table."""

from __future__ import annotations

import re

from tests.nix import nixeval

DOC = nixeval.DOCS


def test_option_table_matches_the_module(nixpkgs_lib):
    assert nixeval.regenerate_docs(nixpkgs_lib, check=True), "docs/nixos.md is stale: run scripts/gen-nixos-docs"


def test_every_option_has_a_type_default_and_description(nixpkgs_lib):
    for option in nixeval.module_options(nixpkgs_lib):
        assert option["description"].strip(), option["name"]
        # fields of an entry of a list or attribute set (a source's name, an MCP server's command) may be required
        entry_field = ".*." in option["name"] or option["name"].count("<name>") > 1
        assert option["default"] is not None or entry_field, f"{option['name']} has no default"


def test_the_issue_options_exist(nixpkgs_lib):
    names = {o["name"].removeprefix("keystone.os.agents.<name>.") for o in nixeval.module_options(nixpkgs_lib)}
    wanted = """uid fullName email host archetype ssh.publicKey ssh.keyFile ssh.passphraseFile desktop.enable
      desktop.resolution desktop.vncPort desktop.vncBind chrome.enable chrome.debugPort chrome.mcp.enable
      mail.address mail.imap.host mail.imap.port mail.smtp.host mail.smtp.port mail.passwordFile calendar.url
      calendar.user calendar.passwordFile github.username forgejo.url forgejo.username forgejo.tokenFile notes.repo
      notes.path notes.sync.onCalendar notes.taskLoop.onCalendar notes.taskLoop.maxTasks notes.taskLoop.maxAttempts
      notes.taskLoop.timeout notes.taskLoop.defaults notes.taskLoop.profiles notes.taskLoop.ingest
      notes.taskLoop.prioritize notes.taskLoop.execute notes.scheduler.onCalendar mcp.servers extraPackages""".split()
    assert [w for w in wanted if w not in names] == []


def test_every_secret_option_is_in_the_secrets_table(nixpkgs_lib):
    text = DOC.read_text()
    secrets = text[text.index("## Secrets"):text.index("## Options")]
    for option in nixeval.module_options(nixpkgs_lib):
        short = option["name"].removeprefix("keystone.os.agents.<name>.")
        if re.search(r"(password|token|key|passphrase)File$", short):
            assert f"| `{short}` |" in secrets, short


def test_the_documented_example_is_nix_example_nix():
    text = DOC.read_text()
    example = (nixeval.REPO / "nix/example.nix").read_text()
    assert f"```nix\n{example}```" in text
