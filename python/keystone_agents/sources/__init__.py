"""Pre-fetch sources behind one interface: a name (and an optional project) → JSON data.

`CommandSource` runs a command that prints JSON (PROJECTS.yaml's and the config's sources). Later sources
(email, GitHub, Forgejo notifications) implement the same `Source` protocol.
"""

from keystone_agents.sources.base import FetchResult, Source, SourceFailed
from keystone_agents.sources.command import CommandSource

__all__ = ["CommandSource", "FetchResult", "Source", "SourceFailed"]
