"""Key-value state with optimistic locking: the agent's private state (private.py, its own SQLite file) and
the cross-agent shared state (over the coordination bus). Both have the same shapes (`Entry`, `Version`), the
same errors (`VersionConflict`, `NoSuchKey`, `KeyRefused`) and the same command line (commands/kv.py)."""
