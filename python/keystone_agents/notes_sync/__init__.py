"""Notes sync: the agent's notes repo committed, rebased and pushed on a timer, with nothing ever lost."""
