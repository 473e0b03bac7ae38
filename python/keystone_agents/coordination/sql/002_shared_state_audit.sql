-- 002: shared state (optimistic locking, every version kept) and the hash-chained audit log.
-- The twin of store.py's migration 2; the rules are the broker's (one contract suite runs against both).
-- Writes only through SECURITY DEFINER functions; a conflict or refusal is *returned* (and its audit entry
-- commits), never raised. Every audit_events row (001's comms entries included) is appended to the chain by
-- a trigger: hash = sha256(prev_hash || entry text), genesis 32 zero bytes (coordination/audit.py verifies).

SET LOCAL search_path = keystone, pg_temp;

ALTER TABLE keystone.principals ADD COLUMN write_prefixes text[] NOT NULL DEFAULT ARRAY['']::text[];

CREATE TABLE keystone.shared_limits (           -- filled by `keystone-agent bus migrate` (coordination.shared)
  one             boolean PRIMARY KEY DEFAULT true CHECK (one),
  max_value_bytes int NOT NULL DEFAULT 65536,
  quota_bytes     bigint NOT NULL DEFAULT 524288000
);
INSERT INTO keystone.shared_limits DEFAULT VALUES;

CREATE TABLE keystone.shared_state (
  key         text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 512),
  value       jsonb NOT NULL,
  size_bytes  int NOT NULL,                       -- key + value text, for the quota
  version     bigint NOT NULL CHECK (version >= 1),
  owner_agent text NOT NULL,                      -- last writer: short name, or human:<user>
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE keystone.shared_state_history (
  seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- commit order (writers hold the audit head)
  key         text NOT NULL,
  version     bigint NOT NULL,
  value       jsonb,
  deleted     boolean NOT NULL DEFAULT false,
  owner_agent text NOT NULL,
  at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (key, version)
);
GRANT SELECT ON keystone.shared_state, keystone.shared_state_history TO keystone_agent, keystone_admin;

CREATE TABLE keystone.audit_log (
  seq       bigint PRIMARY KEY,
  at        timestamptz NOT NULL,
  actor     text NOT NULL,
  action    text NOT NULL,
  entry     text NOT NULL,                        -- the exact text hashed: {seq, at, actor, action, detail}
  prev_hash bytea NOT NULL,
  hash      bytea NOT NULL
);
CREATE INDEX audit_log_actor ON keystone.audit_log (actor, seq);
CREATE INDEX audit_log_action ON keystone.audit_log (action, seq);
CREATE TABLE keystone.audit_head (
  one boolean PRIMARY KEY DEFAULT true CHECK (one), seq bigint NOT NULL, hash bytea NOT NULL
);
INSERT INTO keystone.audit_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');
GRANT SELECT ON keystone.audit_log, keystone.audit_head TO keystone_admin;

CREATE FUNCTION keystone.audit_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE h audit_head; v_text text; v_at text;
BEGIN
  SELECT * INTO h FROM audit_head FOR UPDATE;     -- one chain: appenders are serialized
  v_at := to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
  v_text := jsonb_build_object('seq', h.seq + 1, 'at', v_at, 'actor', NEW.actor, 'action', NEW.action,
                               'detail', NEW.detail)::text;
  INSERT INTO audit_log (seq, at, actor, action, entry, prev_hash, hash)
  VALUES (h.seq + 1, NEW.at, NEW.actor, NEW.action, v_text, h.hash, sha256(h.hash || convert_to(v_text, 'UTF8')));
  UPDATE audit_head SET seq = h.seq + 1, hash = sha256(h.hash || convert_to(v_text, 'UTF8'));
  RETURN NULL;
END $$;
CREATE TRIGGER audit_events_chain AFTER INSERT ON keystone.audit_events
  FOR EACH ROW EXECUTE FUNCTION keystone.audit_chain();

CREATE FUNCTION keystone.audit(p_action text, p_detail jsonb) RETURNS void LANGUAGE sql AS
$$ INSERT INTO keystone.audit_events (action, detail) VALUES (p_action, p_detail) $$;

CREATE FUNCTION keystone.owner_name(p principals) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN p.kind = 'agent' THEN p.name ELSE 'human:' || p.name END $$;

CREATE FUNCTION keystone.shared_refuse(p_op text, p_key text, p_message text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  PERFORM audit('shared.refused', jsonb_build_object('key', p_key, 'op', p_op, 'error', 'KeyRefused',
                                                     'reason', p_message));
  RETURN jsonb_build_object('ok', false, 'error', 'KeyRefused', 'message', p_message, 'key', p_key);
END $$;

CREATE FUNCTION keystone.shared_entry(s shared_state) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('key', s.key, 'value', s.value, 'version', s.version, 'owner_agent', s.owner_agent,
    'updated_at', to_char(s.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;

CREATE FUNCTION keystone.shared_change(c shared_state_history) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('seq', c.seq, 'key', c.key, 'version', c.version, 'value', c.value,
    'deleted', c.deleted, 'owner_agent', c.owner_agent,
    'at', to_char(c.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;

CREATE FUNCTION keystone.may_write(p principals, p_key text) RETURNS boolean LANGUAGE sql IMMUTABLE AS
$$ SELECT p.kind = 'admin' OR EXISTS (SELECT 1 FROM unnest(p.write_prefixes) w WHERE left(p_key, length(w)) = w) $$;

-- p_text: the value's JSON text (its size is what maxValueBytes bounds)
CREATE FUNCTION keystone.shared_set(p_key text, p_text text, p_expected bigint) RETURNS jsonb LANGUAGE plpgsql
SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); lim shared_limits; cur shared_state; v_value jsonb; v_size int; v_used bigint;
        v_version bigint; v_digest text;
BEGIN
  IF p_key IS NULL OR length(p_key) NOT BETWEEN 1 AND 512 OR p_key ~ '[\x01-\x1f]' THEN
    RAISE EXCEPTION 'a key is text of 1 to 512 characters' USING ERRCODE = '22023';
  END IF;
  IF p_expected IS NULL OR p_expected < 0 THEN
    RAISE EXCEPTION 'expected_version is a whole number >= 0 (0 creates the key)' USING ERRCODE = '22023';
  END IF;
  v_value := p_text::jsonb;
  SELECT * INTO lim FROM shared_limits;
  IF NOT may_write(p, p_key) THEN
    RETURN shared_refuse('set', p_key, format('%s may not write %L: it is outside its shared.writePrefixes (%s)',
                         p.name, p_key, array_to_string(ARRAY(SELECT quote_literal(w) FROM unnest(p.write_prefixes) w), ', ')));
  END IF;
  IF octet_length(p_text) > lim.max_value_bytes THEN
    RETURN shared_refuse('set', p_key, format('the value is %s bytes; the maximum is %s bytes',
                                              octet_length(p_text), lim.max_value_bytes));
  END IF;
  PERFORM 1 FROM audit_head FOR UPDATE;           -- writers in commit order: history seq orders `watch`
  v_digest := encode(sha256(convert_to(p_text, 'UTF8')), 'hex');
  SELECT * INTO cur FROM shared_state WHERE key = p_key FOR UPDATE;
  IF coalesce(cur.version, 0) <> p_expected THEN
    PERFORM audit('shared.set.conflict', jsonb_build_object('key', p_key, 'expected', p_expected,
                  'current', coalesce(cur.version, 0), 'value_sha256', v_digest));
    RETURN jsonb_build_object('ok', false, 'current_version', coalesce(cur.version, 0));
  END IF;
  v_size := octet_length(p_key) + octet_length(p_text);
  SELECT coalesce(sum(size_bytes), 0) INTO v_used FROM shared_state;
  IF v_used - coalesce(cur.size_bytes, 0) + v_size > lim.quota_bytes THEN
    RETURN shared_refuse('set', p_key, format('the shared state would hold %s bytes; its quota is %s bytes',
                                              v_used - coalesce(cur.size_bytes, 0) + v_size, lim.quota_bytes));
  END IF;
  IF cur.key IS NULL THEN
    SELECT coalesce(max(version), 0) + 1 INTO v_version FROM shared_state_history WHERE key = p_key;
    INSERT INTO shared_state (key, value, size_bytes, version, owner_agent)
    VALUES (p_key, v_value, v_size, v_version, owner_name(p));
  ELSE
    v_version := cur.version + 1;
    UPDATE shared_state SET value = v_value, size_bytes = v_size, version = v_version, owner_agent = owner_name(p),
                            updated_at = now() WHERE key = p_key;
  END IF;
  INSERT INTO shared_state_history (key, version, value, owner_agent) VALUES (p_key, v_version, v_value, owner_name(p));
  PERFORM audit('shared.set', jsonb_build_object('key', p_key, 'expected', p_expected, 'version', v_version,
                                                 'value_sha256', v_digest));
  PERFORM pg_notify('keystone_state', v_version::text);
  RETURN jsonb_build_object('ok', true, 'version', v_version);
END $$;

CREATE FUNCTION keystone.shared_delete(p_key text, p_expected bigint) RETURNS jsonb LANGUAGE plpgsql
SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); cur shared_state;
BEGIN
  IF NOT may_write(p, p_key) THEN
    RETURN shared_refuse('delete', p_key, format('%s may not write %L: it is outside its shared.writePrefixes',
                                                 p.name, p_key));
  END IF;
  PERFORM 1 FROM audit_head FOR UPDATE;
  SELECT * INTO cur FROM shared_state WHERE key = p_key FOR UPDATE;
  IF cur.key IS NULL THEN
    RETURN jsonb_build_object('ok', false, 'error', 'NoSuchKey', 'message', 'no such key: ' || p_key, 'key', p_key);
  END IF;
  IF cur.version <> p_expected THEN
    PERFORM audit('shared.delete.conflict', jsonb_build_object('key', p_key, 'expected', p_expected,
                                                               'current', cur.version));
    RETURN jsonb_build_object('ok', false, 'current_version', cur.version);
  END IF;
  DELETE FROM shared_state WHERE key = p_key;
  INSERT INTO shared_state_history (key, version, value, deleted, owner_agent)
  VALUES (p_key, cur.version + 1, NULL, true, owner_name(p));
  PERFORM audit('shared.delete', jsonb_build_object('key', p_key, 'expected', p_expected, 'version', cur.version + 1));
  PERFORM pg_notify('keystone_state', (cur.version + 1)::text);
  RETURN jsonb_build_object('ok', true, 'version', cur.version + 1);
END $$;

CREATE FUNCTION keystone.shared_get(p_key text) RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); s shared_state;
BEGIN
  SELECT * INTO s FROM shared_state WHERE key = p_key;
  RETURN CASE WHEN s.key IS NULL THEN NULL ELSE shared_entry(s) END;
END $$;

CREATE FUNCTION keystone.shared_list(p_prefix text) RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me();
BEGIN
  RETURN coalesce((SELECT jsonb_agg(shared_entry(s) ORDER BY s.key) FROM shared_state s
                   WHERE left(s.key, length(p_prefix)) = p_prefix), '[]'::jsonb);
END $$;

CREATE FUNCTION keystone.shared_history(p_key text) RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me();
BEGIN
  RETURN coalesce((SELECT jsonb_agg(shared_change(c) ORDER BY c.version) FROM shared_state_history c
                   WHERE c.key = p_key), '[]'::jsonb);
END $$;

CREATE FUNCTION keystone.shared_changes(p_prefix text, p_after bigint, p_limit int) RETURNS jsonb LANGUAGE plpgsql
STABLE SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me();
BEGIN
  RETURN coalesce((SELECT jsonb_agg(shared_change(c) ORDER BY c.seq) FROM
                     (SELECT * FROM shared_state_history WHERE seq > p_after AND left(key, length(p_prefix)) = p_prefix
                      ORDER BY seq LIMIT p_limit) c), '[]'::jsonb);
END $$;

CREATE FUNCTION keystone.audit_append(p_action text, p_detail jsonb) RETURNS jsonb LANGUAGE plpgsql
SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); h audit_head;
BEGIN
  IF p.kind <> 'admin' THEN
    RAISE EXCEPTION 'only admins (root, agent-admins) can append to the audit log' USING ERRCODE = 'KS403';
  END IF;
  IF NOT (p_action LIKE 'audit.%' OR p_action LIKE 'approval.%' OR p_action LIKE 'policy.%') THEN
    RAISE EXCEPTION 'only audit.*, approval.* and policy.* actions can be appended directly' USING ERRCODE = '22023';
  END IF;
  PERFORM audit(p_action, p_detail);
  SELECT * INTO h FROM audit_head;
  RETURN jsonb_build_object('seq', h.seq, 'hash', encode(h.hash, 'hex'));
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA keystone FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keystone.identity(), keystone.send(text, jsonb, text, text, int, uuid, uuid, uuid, float8, text),
  keystone.claim(int, float8, int), keystone.ack(uuid, text), keystone.get_message(uuid), keystone.thread(uuid),
  keystone.inbox(text[], int, text), keystone.outbox(int, text), keystone.take_reply(uuid), keystone.stop_waiting(uuid),
  keystone.hierarchy(uuid), keystone.stats(),
  keystone.shared_set(text, text, bigint), keystone.shared_delete(text, bigint), keystone.shared_get(text),
  keystone.shared_list(text), keystone.shared_history(text), keystone.shared_changes(text, bigint, int),
  keystone.audit_append(text, jsonb)
  TO keystone_agent, keystone_admin;
