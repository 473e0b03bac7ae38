"""keystone-agents: the runtime of autonomous LLM agents living as Linux users on NixOS."""

__version__ = "0.1.0"
