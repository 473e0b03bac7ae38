"""The two console scripts: `keystone-agent` (inside an agent account) and `agentctl` (on the host)."""
