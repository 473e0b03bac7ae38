-- 001: comms. Roles, the principals registry, messages, audit events, and the SECURITY DEFINER API.
-- Agents and admins have no INSERT/UPDATE/DELETE on any table: every write goes through these functions,
-- which stamp the sender as session_user (the peer-authenticated Linux user). Row-level security limits
-- direct reads to what a role sent or received (admins: everything). The rules mirror store.py.

CREATE SCHEMA keystone AUTHORIZATION keystone_owner;
GRANT USAGE ON SCHEMA keystone TO keystone_agent, keystone_admin;
SET LOCAL search_path = keystone, pg_temp;

CREATE TABLE keystone.principals (            -- filled by `keystone-agent bus migrate` from the host config
  role           text PRIMARY KEY,             -- Linux user = database role
  name           text NOT NULL,                -- agents: short name; admins: user name
  kind           text NOT NULL CHECK (kind IN ('agent', 'admin')),
  accept_from    text[] NOT NULL DEFAULT '{*}',
  max_depth      int NOT NULL DEFAULT 3,
  sends_per_hour int NOT NULL DEFAULT 120
);

CREATE TABLE keystone.messages (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  msg_uuid       uuid NOT NULL UNIQUE,
  sender         text NOT NULL,
  recipient      text NOT NULL,
  kind           text NOT NULL CHECK (kind IN ('message', 'ask', 'reply')),
  correlation_id uuid,
  in_reply_to    bigint REFERENCES keystone.messages (id),
  parent_id      bigint REFERENCES keystone.messages (id),
  depth          int NOT NULL DEFAULT 0,
  await_until    timestamptz,
  subject        text NOT NULL DEFAULT '',
  body           jsonb NOT NULL,
  priority       int NOT NULL DEFAULT 0,
  reply_status   text CHECK (reply_status IN ('ok', 'failed')),
  state          text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'leased', 'delivered', 'done', 'failed')),
  visible_at     timestamptz NOT NULL DEFAULT now(),
  lease_until    timestamptz,
  delivery_count int NOT NULL DEFAULT 0,
  created_at     timestamptz NOT NULL DEFAULT now(),
  delivered_at   timestamptz,
  done_at        timestamptz,
  task_ref       text
);
CREATE INDEX messages_inbox ON keystone.messages (recipient, state, priority DESC, id);
CREATE INDEX messages_corr ON keystone.messages (correlation_id);
CREATE INDEX messages_sent ON keystone.messages (sender, created_at);
CREATE INDEX messages_parent ON keystone.messages (parent_id);

CREATE TABLE keystone.audit_events (
  id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor  text NOT NULL DEFAULT session_user,
  action text NOT NULL,
  detail jsonb NOT NULL
);

ALTER TABLE keystone.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY messages_mine ON keystone.messages FOR SELECT TO keystone_agent
  USING (recipient = session_user OR sender = session_user);
CREATE POLICY messages_admin ON keystone.messages FOR SELECT TO keystone_admin USING (true);
GRANT SELECT ON keystone.messages, keystone.principals TO keystone_agent, keystone_admin;
GRANT SELECT ON keystone.audit_events TO keystone_admin;

-- ------------------------------------------------------------------ helpers (not granted)

CREATE FUNCTION keystone.name_of(p_role text) RETURNS text LANGUAGE sql STABLE AS
$$ SELECT coalesce((SELECT name FROM keystone.principals WHERE role = p_role), p_role) $$;

CREATE FUNCTION keystone.envelope(m keystone.messages) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', m.msg_uuid, 'kind', m.kind, 'from', keystone.name_of(m.sender), 'to', keystone.name_of(m.recipient),
    'body', m.body, 'subject', m.subject, 'priority', m.priority, 'state', m.state, 'depth', m.depth,
    'correlation_id', m.correlation_id,
    'in_reply_to', (SELECT i.msg_uuid FROM keystone.messages i WHERE i.id = m.in_reply_to),
    'awaiting', coalesce(m.await_until > now(), false), 'status', m.reply_status,
    'delivery_count', m.delivery_count,
    'created_at', to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'delivered_at', to_char(m.delivered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'done_at', to_char(m.done_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'task_ref', m.task_ref)
$$;

CREATE FUNCTION keystone.me() RETURNS keystone.principals LANGUAGE plpgsql STABLE AS $$
DECLARE p keystone.principals;
BEGIN
  SELECT * INTO p FROM keystone.principals WHERE role = session_user;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'role % is neither an agent nor an admin on the bus', session_user USING ERRCODE = 'KS403';
  END IF;
  RETURN p;
END $$;

CREATE FUNCTION keystone.visible(m keystone.messages, p keystone.principals) RETURNS boolean LANGUAGE sql STABLE AS
$$ SELECT p.kind = 'admin' OR m.sender = p.role OR m.recipient = p.role $$;

CREATE FUNCTION keystone.refuse(p_code text, p_message text, p_detail jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO keystone.audit_events (action, detail)
  VALUES ('comms.refused', p_detail || jsonb_build_object('error', p_code, 'reason', p_message));
  RETURN jsonb_build_object('ok', false, 'error', p_code, 'message', p_message);
END $$;

CREATE FUNCTION keystone.wake(p_role text, p_id bigint) RETURNS void LANGUAGE sql AS
$$ SELECT pg_notify('keystone_wake_' || md5(p_role), p_id::text) $$;  -- ids only: channels are public

-- ------------------------------------------------------------------ the API

CREATE FUNCTION keystone.identity() RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me();
BEGIN
  RETURN jsonb_build_object('name', p.name, 'role', p.role, 'kind', p.kind);
END $$;

CREATE FUNCTION keystone.send(p_to text, p_body jsonb, p_kind text, p_subject text, p_priority int, p_id uuid,
                              p_in_reply_to uuid, p_parent uuid, p_await_seconds float8, p_status text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE
  p principals := me();
  r principals;
  existing messages;
  ask messages;
  par messages;
  v_depth int := 0;
  v_parent bigint;
  v_sent int;
  v_id uuid := p_id;
  v_detail jsonb;
  row_ messages;
BEGIN
  IF p_kind NOT IN ('message', 'ask', 'reply') THEN
    RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest', 'message', 'kind must be message, ask or reply');
  END IF;
  IF p_priority NOT IN (-1, 0, 1) THEN
    RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest', 'message', 'priority must be low, normal or high');
  END IF;
  IF length(coalesce(p_subject, '')) > 500 OR octet_length(p_body::text) > 262144 THEN
    RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest', 'message', 'subject or body too large');
  END IF;
  IF p_kind = 'reply' THEN
    IF p_in_reply_to IS NULL THEN
      RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest',
                                'message', 'a reply names the ask it answers (in_reply_to)');
    END IF;
    IF coalesce(p_status, 'ok') NOT IN ('ok', 'failed') THEN
      RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest', 'message', 'status must be ok or failed');
    END IF;
  ELSIF p_status IS NOT NULL THEN
    RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest', 'message', 'only a reply has a status');
  END IF;
  v_detail := jsonb_build_object('id', v_id, 'kind', p_kind, 'to', p_to);
  -- one logical send, one row: serialize sends of the same id
  PERFORM pg_advisory_xact_lock(hashtextextended(v_id::text, 0));
  SELECT * INTO existing FROM messages WHERE msg_uuid = v_id;
  IF FOUND THEN
    IF existing.sender <> p.role THEN
      RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest',
                                'message', format('message id %s is already used by another sender', v_id));
    END IF;
    RETURN jsonb_build_object('ok', true, 'message', envelope(existing) || '{"created": false}');
  END IF;

  IF p_kind = 'reply' THEN
    SELECT * INTO ask FROM messages WHERE msg_uuid = p_in_reply_to FOR UPDATE;
    IF NOT FOUND OR (ask.recipient <> p.role AND ask.sender <> p.role) THEN
      RETURN refuse('NotFound', format('no ask %s addressed to you', p_in_reply_to), v_detail);
    END IF;
    IF ask.kind <> 'ask' OR ask.recipient <> p.role THEN
      RETURN refuse('NotAllowed', format('only the receiver of an ask can reply to it (%s is not an ask sent to you)',
                                         p_in_reply_to), v_detail);
    END IF;
    SELECT * INTO r FROM principals WHERE role = ask.sender;
    IF NOT FOUND THEN
      RETURN refuse('NotFound', format('the asker of %s is no longer on the bus', p_in_reply_to), v_detail);
    END IF;
    IF p_to IS NOT NULL AND p_to NOT IN (r.name, r.role) THEN
      RETURN refuse('NotAllowed', format('a reply goes to the asker (%s), not to %s', r.name, p_to), v_detail);
    END IF;
    IF EXISTS (SELECT 1 FROM messages WHERE in_reply_to = ask.id AND kind = 'reply') THEN
      RETURN refuse('NotAllowed', format('ask %s already has a reply (%s)', p_in_reply_to,
                    (SELECT msg_uuid FROM messages WHERE in_reply_to = ask.id AND kind = 'reply')), v_detail);
    END IF;
    INSERT INTO messages (msg_uuid, sender, recipient, kind, correlation_id, in_reply_to, parent_id, depth, subject,
                          body, priority, reply_status)
    VALUES (v_id, p.role, r.role, 'reply', ask.msg_uuid, ask.id, ask.parent_id, ask.depth, coalesce(p_subject, ''),
            p_body, p_priority, coalesce(p_status, 'ok'))
    RETURNING * INTO row_;
    UPDATE messages SET state = 'done', done_at = now() WHERE id = ask.id;
    INSERT INTO audit_events (action, detail)
    VALUES ('comms.reply', jsonb_build_object('id', v_id, 'kind', 'reply', 'to', r.role, 'depth', ask.depth));
  ELSE
    IF p_to IS NULL OR p_to = '' THEN
      RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest', 'message', 'a message needs a recipient (--to AGENT)');
    END IF;
    SELECT * INTO r FROM principals WHERE name = p_to AND kind = 'agent';
    IF NOT FOUND THEN
      RETURN refuse('NotFound', format('no agent named %L on the bus', p_to), v_detail);
    END IF;
    IF NOT ('*' = ANY (r.accept_from) OR (p.kind = 'admin' AND 'admins' = ANY (r.accept_from))
            OR p.name = ANY (r.accept_from)) THEN
      RETURN refuse('NotAllowed', format('%s does not accept messages from %s (its comms.acceptFrom is %s)', r.name,
                    p.name, coalesce(nullif(array_to_string(r.accept_from, ', '), ''), 'empty')), v_detail);
    END IF;
    IF p_parent IS NOT NULL THEN
      SELECT * INTO par FROM messages WHERE msg_uuid = p_parent;
      IF NOT FOUND OR (par.recipient <> p.role AND p.kind <> 'admin') THEN
        RETURN refuse('NotFound', format('parent message %s is not one you received', p_parent), v_detail);
      END IF;
      v_parent := par.id;
      v_depth := par.depth + 1;
    END IF;
    IF v_depth > r.max_depth THEN
      RETURN refuse('DepthExceeded', format('delegation depth %s exceeds %s''s maxDepth %s', v_depth, r.name,
                    r.max_depth), v_detail);
    END IF;
    IF p.kind = 'agent' THEN
      PERFORM pg_advisory_xact_lock(hashtextextended('keystone-rate:' || p.role, 0));
      SELECT count(*) INTO v_sent FROM messages
       WHERE sender = p.role AND kind <> 'reply' AND created_at > now() - interval '1 hour';
      IF v_sent >= p.sends_per_hour THEN
        RETURN refuse('RateLimited', format('%s has sent %s messages in the last hour (sendsPerHour %s)', p.name,
                      v_sent, p.sends_per_hour), v_detail);
      END IF;
    END IF;
    INSERT INTO messages (msg_uuid, sender, recipient, kind, correlation_id, parent_id, depth, await_until, subject,
                          body, priority)
    VALUES (v_id, p.role, r.role, p_kind, CASE WHEN p_kind = 'ask' THEN v_id END, v_parent, v_depth,
            CASE WHEN p_kind = 'ask' AND p_await_seconds > 0 THEN now() + make_interval(secs => p_await_seconds) END,
            coalesce(p_subject, ''), p_body, p_priority)
    RETURNING * INTO row_;
    INSERT INTO audit_events (action, detail)
    VALUES ('comms.send', jsonb_build_object('id', v_id, 'kind', p_kind, 'to', r.role, 'depth', v_depth));
  END IF;
  PERFORM wake(row_.recipient, row_.id);
  RETURN jsonb_build_object('ok', true, 'message', envelope(row_) || '{"created": true}');
END $$;

CREATE FUNCTION keystone.claim(p_limit int, p_lease float8, p_max int) RETURNS jsonb LANGUAGE plpgsql
SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE
  p principals := me();
  m messages;
  leased jsonb := '[]';
  dead jsonb := '[]';
BEGIN
  FOR m IN
    SELECT x.* FROM messages x LEFT JOIN messages a ON a.id = x.in_reply_to
     WHERE x.recipient = p.role
       AND ((x.state = 'queued' AND x.visible_at <= now()) OR (x.state = 'leased' AND x.lease_until < now()))
       AND NOT (x.kind = 'reply' AND coalesce(a.await_until > now(), false))
     ORDER BY x.priority DESC, x.id LIMIT p_limit
     FOR UPDATE OF x SKIP LOCKED
  LOOP
    IF m.delivery_count >= p_max THEN
      UPDATE messages SET state = 'failed', done_at = now(), lease_until = NULL WHERE id = m.id RETURNING * INTO m;
      dead := dead || envelope(m);
    ELSE
      UPDATE messages SET state = 'leased', lease_until = now() + make_interval(secs => p_lease),
                          delivery_count = delivery_count + 1 WHERE id = m.id RETURNING * INTO m;
      leased := leased || envelope(m);
    END IF;
  END LOOP;
  IF jsonb_array_length(dead) > 0 THEN
    INSERT INTO audit_events (action, detail)
    VALUES ('comms.dead_letter', jsonb_build_object('ids', (SELECT jsonb_agg(d->'id') FROM jsonb_array_elements(dead) d)));
  END IF;
  RETURN jsonb_build_object('messages', leased, 'dead', dead);
END $$;

CREATE FUNCTION keystone.ack(p_id uuid, p_ref text) RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); v_state text;
BEGIN
  SELECT state INTO v_state FROM messages WHERE msg_uuid = p_id AND recipient = p.role FOR UPDATE;
  IF NOT FOUND THEN RETURN false; END IF;
  IF v_state IN ('queued', 'leased', 'failed') THEN
    UPDATE messages SET state = 'delivered', delivered_at = now(), lease_until = NULL, task_ref = p_ref
     WHERE msg_uuid = p_id;
  END IF;
  RETURN true;
END $$;

CREATE FUNCTION keystone.get_message(p_id uuid) RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); m messages;
BEGIN
  SELECT * INTO m FROM messages WHERE msg_uuid = p_id;
  IF NOT FOUND OR NOT visible(m, p) THEN RETURN NULL; END IF;
  RETURN envelope(m);
END $$;

CREATE FUNCTION keystone.thread(p_id uuid) RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); m messages; v_root uuid;
BEGIN
  SELECT * INTO m FROM messages WHERE msg_uuid = p_id;
  IF NOT FOUND OR NOT visible(m, p) THEN RETURN NULL; END IF;
  v_root := coalesce((SELECT i.msg_uuid FROM messages i WHERE i.id = m.in_reply_to), m.msg_uuid);
  RETURN coalesce((SELECT jsonb_agg(envelope(x) ORDER BY x.id) FROM messages x
                    WHERE (x.msg_uuid = v_root OR x.correlation_id = v_root) AND visible(x, p)), '[]');
END $$;

CREATE FUNCTION keystone.whose(p principals, p_of text) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE v_role text;
BEGIN
  IF p_of IS NULL OR p_of = '' THEN RETURN p.role; END IF;
  IF p.kind <> 'admin' THEN
    RAISE EXCEPTION 'only admins can read another agent''s inbox or outbox' USING ERRCODE = 'KS403';
  END IF;
  SELECT role INTO v_role FROM principals WHERE name = p_of AND kind = 'agent';
  IF NOT FOUND THEN RAISE EXCEPTION 'no agent named % on the bus', p_of USING ERRCODE = 'KS404'; END IF;
  RETURN v_role;
END $$;

CREATE FUNCTION keystone.inbox(p_states text[], p_limit int, p_of text) RETURNS jsonb LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE v_role text := whose(me(), p_of);
BEGIN
  RETURN coalesce((SELECT jsonb_agg(envelope(x) ORDER BY x.priority DESC, x.id) FROM
                    (SELECT * FROM messages WHERE recipient = v_role AND state = ANY (p_states)
                      ORDER BY priority DESC, id LIMIT p_limit) x), '[]');
END $$;

CREATE FUNCTION keystone.outbox(p_limit int, p_of text) RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE v_role text := whose(me(), p_of);
BEGIN
  RETURN coalesce((SELECT jsonb_agg(envelope(x) ORDER BY x.id DESC) FROM
                    (SELECT * FROM messages WHERE sender = v_role ORDER BY id DESC LIMIT p_limit) x), '[]');
END $$;

CREATE FUNCTION keystone.take_reply(p_ask uuid) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); a messages; r messages;
BEGIN
  SELECT * INTO a FROM messages WHERE msg_uuid = p_ask AND sender = p.role AND kind = 'ask';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no ask % that you sent', p_ask USING ERRCODE = 'KS404';
  END IF;
  SELECT * INTO r FROM messages WHERE in_reply_to = a.id AND kind = 'reply' AND state IN ('queued', 'leased')
   FOR UPDATE SKIP LOCKED;
  IF NOT FOUND THEN RETURN NULL; END IF;
  UPDATE messages SET state = 'done', done_at = now(), lease_until = NULL WHERE id = r.id RETURNING * INTO r;
  RETURN envelope(r);
END $$;

CREATE FUNCTION keystone.stop_waiting(p_ask uuid) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE v jsonb;
BEGIN
  UPDATE messages SET await_until = NULL WHERE msg_uuid = p_ask AND sender = session_user AND kind = 'ask';
  v := take_reply(p_ask);
  IF v IS NULL THEN PERFORM wake(session_user, 0); END IF;  -- a later reply becomes a task for the asker
  RETURN v;
END $$;

CREATE FUNCTION keystone.hierarchy(p_id uuid) RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); m messages; v_root bigint; v_up bigint;
BEGIN
  SELECT * INTO m FROM messages WHERE msg_uuid = p_id;
  IF NOT FOUND OR NOT visible(m, p) THEN RETURN NULL; END IF;
  v_root := coalesce(m.in_reply_to, m.id);
  LOOP
    SELECT parent_id INTO v_up FROM messages WHERE id = v_root;
    EXIT WHEN v_up IS NULL;
    v_root := v_up;
  END LOOP;
  RETURN coalesce((
    WITH RECURSIVE tree(id) AS (
      SELECT v_root UNION SELECT x.id FROM messages x JOIN tree t ON x.parent_id = t.id OR x.in_reply_to = t.id)
    SELECT jsonb_agg(envelope(x) ORDER BY x.id) FROM messages x JOIN tree USING (id) WHERE visible(x, p)), '[]');
END $$;

CREATE FUNCTION keystone.stats() RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me();
BEGIN
  RETURN jsonb_build_object(
    'inbox', (SELECT jsonb_object_agg(s, (SELECT count(*) FROM messages WHERE recipient = p.role AND state = s))
                FROM unnest(ARRAY['queued', 'leased', 'delivered', 'done', 'failed']) s),
    'dead_letters', (SELECT count(*) FROM messages WHERE recipient = p.role AND state = 'failed'),
    'oldest_pending_age_seconds', coalesce((SELECT round(extract(epoch FROM now() - min(created_at))::numeric, 3)
                                              FROM messages WHERE recipient = p.role AND state IN ('queued', 'leased')), 0),
    'notify_queue_usage', pg_notification_queue_usage());
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA keystone FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keystone.identity(), keystone.send(text, jsonb, text, text, int, uuid, uuid, uuid, float8, text),
  keystone.claim(int, float8, int), keystone.ack(uuid, text), keystone.get_message(uuid), keystone.thread(uuid),
  keystone.inbox(text[], int, text), keystone.outbox(int, text), keystone.take_reply(uuid), keystone.stop_waiting(uuid),
  keystone.hierarchy(uuid), keystone.stats()
  TO keystone_agent, keystone_admin;
