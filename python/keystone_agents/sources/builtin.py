"""The built-in sources, from the configuration: email (mail.imap), GitHub (github, through `gh api`) and
Forgejo/Gitea (forgejo, its REST API), and with a coordination bus its inbox (comms) and the shared keys
changed under exec.watchPrefixes (shared). Each is on when its account is configured and its `fetch` is true.
Calendar events never come through here: the scheduler owns them (one task per event, once)."""

from __future__ import annotations

from pathlib import Path

from keystone_agents.config import Config


def builtin_sources(config: Config, state_dir: Path, env: dict, log=None) -> list:
    sources = []
    mail = config.mail
    if mail is not None and mail.imap is not None and mail.fetch:
        from keystone_agents.sources.email_imap import ImapSource

        sources.append(ImapSource(mail, state_dir, log=log, max_per_run=mail.max_per_run,
                                  timeout=config.source_timeout_seconds))
    if config.github is not None and config.github.fetch:
        from keystone_agents.sources.github import GithubSource

        sources.append(GithubSource(config.github, env=env, log=log, timeout=config.source_timeout_seconds))
    if config.forgejo is not None and config.forgejo.fetch:
        from keystone_agents.sources.forgejo import ForgejoSource

        sources.append(ForgejoSource(config.forgejo, log=log, timeout=config.source_timeout_seconds))
    if config.coordination.backend != "none":
        from keystone_agents.sources.comms import CommsSource

        sources.append(CommsSource(config.coordination, state_dir, config=config, log=log))
        if config.exec.watch_prefixes and config.exec.mode != "proactive":
            from keystone_agents.sources.shared_watch import SharedWatchSource

            sources.append(SharedWatchSource(config, state_dir, log=log))
    return sources
