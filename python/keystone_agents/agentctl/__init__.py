"""agentctl: host config, dispatch as the agent, SSH forwarding, preferences, interactive sessions."""
