"""Pre-fetch sources behind one interface: a name (and an optional project) → JSON data.

`CommandSource` runs a command that prints JSON (PROJECTS.yaml's and the config's sources). The built-in
sources (builtin.py: email over IMAP, GitHub through `gh api`, Forgejo/Gitea over REST) implement the same
`Source` protocol and are imported only when configured.
"""

from keystone_agents.sources.base import FetchResult, Source, SourceFailed
from keystone_agents.sources.command import CommandSource

__all__ = ["CommandSource", "FetchResult", "Source", "SourceFailed"]
