"""One module per `keystone-agent` action."""
