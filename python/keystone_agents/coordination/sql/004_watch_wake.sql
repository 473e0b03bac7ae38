-- 004: shared-state writes wake the agents that watch the key (exec.watchPrefixes, issue 19).
-- The twin of store.Store._wake_watchers: after a committed write (set or delete), every agent other than the
-- writer whose watch_prefixes match the key gets a NOTIFY on its wake channel (wake(), 001), like a message
-- to it; its `comms listen` touches the wake file and its drain reads the change. Payload: the change's seq.

SET LOCAL search_path = keystone, pg_temp;

ALTER TABLE keystone.principals ADD COLUMN watch_prefixes text[] NOT NULL DEFAULT ARRAY[]::text[];

CREATE FUNCTION keystone.wake_watchers() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
BEGIN
  PERFORM wake(p.role, NEW.seq) FROM principals p
   WHERE p.kind = 'agent' AND p.name <> NEW.owner_agent
     AND EXISTS (SELECT 1 FROM unnest(p.watch_prefixes) w WHERE left(NEW.key, length(w)) = w);
  RETURN NULL;
END $$;

CREATE TRIGGER shared_state_history_wake AFTER INSERT ON keystone.shared_state_history
  FOR EACH ROW EXECUTE FUNCTION keystone.wake_watchers();
REVOKE ALL ON FUNCTION keystone.wake_watchers() FROM PUBLIC;
