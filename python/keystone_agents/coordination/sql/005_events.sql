-- 005: the fleet's event table, for `watch` across hosts (issue 19; docs/watch.md). Every event an agent's
-- runtime writes to its own history database's events table is also appended here (events.BusEvents), through
-- event_append(): the agent is the caller's role (never a claimed name). Agents read their own events, admins
-- everyone's, through events_after(), whose cursor is gap-free: identity values are handed out before commit,
-- so only rows of transactions older than every one still in flight are returned
-- (tx < pg_snapshot_xmin(pg_current_snapshot())); a row committed late is read on a later call, never skipped.

SET LOCAL search_path = keystone, pg_temp;

CREATE TABLE keystone.events (
  id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tx     xid8 NOT NULL DEFAULT pg_current_xact_id(),
  at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  agent  text NOT NULL,                           -- short name, from the caller's role
  host   text NOT NULL DEFAULT '',
  run_id text,
  task   text,
  type   text NOT NULL CHECK (length(type) BETWEEN 1 AND 100),
  data   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_agent_id ON keystone.events (agent, id);
CREATE INDEX events_at ON keystone.events (at);

CREATE FUNCTION keystone.event_append(p_host text, p_at timestamptz, p_run_id text, p_task text, p_type text,
                                      p_data jsonb) RETURNS bigint LANGUAGE plpgsql
SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); v_id bigint;
BEGIN
  IF p.kind <> 'agent' THEN
    RAISE EXCEPTION 'only agents write events' USING ERRCODE = 'KS403';
  END IF;
  INSERT INTO events (at, agent, host, run_id, task, type, data)
  VALUES (coalesce(p_at, clock_timestamp()), p.name, coalesce(p_host, ''), p_run_id, p_task, p_type,
          coalesce(p_data, '{}'::jsonb))
  RETURNING id INTO v_id;
  PERFORM pg_notify('keystone_events', v_id::text);
  RETURN v_id;
END $$;

-- Events after p_after (agents: their own; admins: every agent's, or p_agents'), oldest first, as a jsonb
-- array of {id, ts, host, agent, event, run_id, task, data}.
CREATE FUNCTION keystone.events_after(p_after bigint, p_agents text[], p_types text[], p_limit int)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); v_horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
BEGIN
  RETURN coalesce((
    SELECT jsonb_agg(jsonb_build_object('id', e.id, 'ts', to_char(e.at AT TIME ZONE 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'host', e.host, 'agent', e.agent,
                                        'event', e.type, 'run_id', e.run_id, 'task', e.task, 'data', e.data)
                     ORDER BY e.id)
    FROM (SELECT * FROM events e
           WHERE e.id > coalesce(p_after, 0) AND e.tx < v_horizon
             AND (CASE WHEN p.kind = 'admin' THEN p_agents IS NULL OR cardinality(p_agents) = 0
                                                  OR e.agent = ANY (p_agents)
                       ELSE e.agent = p.name END)
             AND (p_types IS NULL OR cardinality(p_types) = 0 OR e.type = ANY (p_types))
           ORDER BY e.id LIMIT greatest(1, least(coalesce(p_limit, 500), 5000))) e), '[]'::jsonb);
END $$;

-- The first event id at or after p_since (for --since TIME), minus one; the newest id when there is none.
CREATE FUNCTION keystone.events_cursor(p_since timestamptz) RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
  SELECT CASE WHEN p_since IS NULL THEN (SELECT coalesce(max(id), 0) FROM events)
              ELSE coalesce((SELECT min(id) - 1 FROM events WHERE at >= p_since),
                            (SELECT coalesce(max(id), 0) FROM events)) END
$$;

-- Retention: an agent prunes its own events older than p_days (the task loop does, like its local table);
-- an admin prunes everyone's.
CREATE FUNCTION keystone.events_prune(p_days int) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); v_count bigint;
BEGIN
  DELETE FROM events WHERE at < now() - make_interval(days => greatest(p_days, 1))
     AND (p.kind = 'admin' OR agent = p.name);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END $$;

REVOKE ALL ON FUNCTION keystone.event_append(text, timestamptz, text, text, text, jsonb),
  keystone.events_after(bigint, text[], text[], int), keystone.events_cursor(timestamptz),
  keystone.events_prune(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keystone.event_append(text, timestamptz, text, text, text, jsonb),
  keystone.events_after(bigint, text[], text[], int), keystone.events_cursor(timestamptz),
  keystone.events_prune(int) TO keystone_agent, keystone_admin;
