-- 003: policy decisions and the approval queue (policy tier approval_required). The twin of store.py's
-- migration 3 and its ApprovalsMixin. Agents request and consume (their own rows only); only admins decide:
-- approval_decide checks the caller is an admin, so an agent can never approve, not even with psql.
SET LOCAL search_path = keystone, pg_temp;

CREATE TABLE keystone.approvals (
  id            uuid PRIMARY KEY,                 -- chosen by the requesting hook
  agent         text NOT NULL DEFAULT session_user,
  task          text NOT NULL DEFAULT '',
  run_id        text NOT NULL DEFAULT '',
  capability    text NOT NULL,                    -- the normalized action, e.g. 'shell:git push origin main'
  action        jsonb NOT NULL,                   -- kind, target, tool, args as the CLI gave them
  action_sha256 text NOT NULL,                    -- grant matching: (agent, action_sha256, task)
  rule          text NOT NULL,
  state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected', 'consumed')),
  requested_at  timestamptz NOT NULL DEFAULT now(),
  decided_at    timestamptz,
  decided_by    text,
  note          text,
  consumed_at   timestamptz
);
CREATE INDEX approvals_state ON keystone.approvals (state, requested_at);
CREATE INDEX approvals_grant ON keystone.approvals (agent, action_sha256, task, state);

ALTER TABLE keystone.approvals ENABLE ROW LEVEL SECURITY;
CREATE POLICY approvals_mine ON keystone.approvals FOR SELECT TO keystone_agent USING (agent = session_user);
CREATE POLICY approvals_admin ON keystone.approvals FOR SELECT TO keystone_admin USING (true);
GRANT SELECT ON keystone.approvals TO keystone_agent, keystone_admin;

CREATE FUNCTION keystone.approval_json(a keystone.approvals) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', a.id, 'agent', keystone.name_of(a.agent), 'task', a.task, 'run_id', a.run_id, 'action', a.capability,
    'detail', a.action, 'action_sha256', a.action_sha256, 'rule', a.rule, 'state', a.state,
    'requested_at', to_char(a.requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'decided_at', to_char(a.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'decided_by', a.decided_by, 'note', a.note,
    'consumed_at', to_char(a.consumed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;

-- a message from the caller to every admin (their bus inbox)
CREATE FUNCTION keystone.admin_message(p_subject text, p_body jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO keystone.messages (msg_uuid, sender, recipient, kind, subject, body, priority)
  SELECT gen_random_uuid(), session_user, pr.role, 'message', left(p_subject, 500), p_body, 1
  FROM keystone.principals pr WHERE pr.kind = 'admin'
$$;

CREATE FUNCTION keystone.policy_notify(p_detail jsonb) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); v_detail jsonb := p_detail || jsonb_build_object('agent', p.name);
BEGIN
  PERFORM audit('policy.decision', v_detail);
  IF p_detail->>'tier' = 'notify' THEN
    PERFORM admin_message('[notify] ' || p.name || ': ' || left(coalesce(p_detail->>'action', ''), 200), v_detail);
  END IF;
  RETURN jsonb_build_object('ok', true);
END $$;

CREATE FUNCTION keystone.approval_request(p_id uuid, p_task text, p_run text, p_action jsonb, p_capability text,
                                          p_sha text, p_rule text) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); a approvals; v_detail jsonb;
BEGIN
  IF p.kind <> 'agent' THEN
    RAISE EXCEPTION 'only agents request approvals' USING ERRCODE = 'KS403';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('keystone.approval:' || session_user || ':' || p_sha));
  SELECT * INTO a FROM approvals WHERE agent = session_user AND action_sha256 = p_sha AND task = coalesce(p_task, '')
    AND state = 'pending';
  IF FOUND THEN
    RETURN approval_json(a) || jsonb_build_object('created', false);
  END IF;
  INSERT INTO approvals (id, task, run_id, capability, action, action_sha256, rule)
  VALUES (p_id, coalesce(p_task, ''), coalesce(p_run, ''), left(p_capability, 4000), p_action, p_sha, left(p_rule, 1000))
  RETURNING * INTO a;
  v_detail := jsonb_build_object('id', a.id, 'agent', p.name, 'task', a.task, 'action', left(a.capability, 2000),
                                 'rule', left(a.rule, 500));
  PERFORM audit('approval.requested', v_detail);
  PERFORM admin_message('[approval] ' || p.name || ' waits for approval ' || a.id::text,
                        v_detail || jsonb_build_object('how', 'agentctl approvals approve ' || a.id::text
                                                               || ' | reject ' || a.id::text));
  RETURN approval_json(a) || jsonb_build_object('created', true);
END $$;

CREATE FUNCTION keystone.approval_consume(p_sha text, p_task text) RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); v_id uuid;
BEGIN
  SELECT id INTO v_id FROM approvals WHERE agent = session_user AND action_sha256 = p_sha AND task = coalesce(p_task, '')
    AND state = 'approved' ORDER BY decided_at LIMIT 1 FOR UPDATE SKIP LOCKED;
  IF v_id IS NULL THEN
    RETURN NULL;
  END IF;
  UPDATE approvals SET state = 'consumed', consumed_at = now() WHERE id = v_id;
  PERFORM audit('approval.consumed', jsonb_build_object('id', v_id, 'agent', p.name, 'task', p_task));
  RETURN v_id;
END $$;

CREATE FUNCTION keystone.approval_get(p_id uuid) RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); a approvals;
BEGIN
  SELECT * INTO a FROM approvals WHERE id = p_id AND (p.kind = 'admin' OR agent = session_user);
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no approval %', p_id USING ERRCODE = 'KS404';
  END IF;
  RETURN approval_json(a);
END $$;

CREATE FUNCTION keystone.approvals_list(p_state text, p_agent text, p_limit int) RETURNS jsonb LANGUAGE plpgsql
STABLE SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me();
BEGIN
  RETURN coalesce((SELECT jsonb_agg(approval_json(a) ORDER BY a.requested_at, a.id) FROM
    (SELECT * FROM approvals x
     WHERE (p.kind = 'admin' OR x.agent = session_user)
       AND (p_state IS NULL OR x.state = p_state)
       AND (p_agent IS NULL OR p.kind <> 'admin' OR x.agent = coalesce(
             (SELECT role FROM principals WHERE name = p_agent AND kind = 'agent'), p_agent))
     ORDER BY x.requested_at, x.id LIMIT p_limit) a), '[]'::jsonb);
END $$;

CREATE FUNCTION keystone.approval_decide(p_id uuid, p_approve boolean, p_note text) RETURNS jsonb LANGUAGE plpgsql
SECURITY DEFINER SET search_path = keystone, pg_temp AS $$
DECLARE p principals := me(); a approvals;
BEGIN
  IF p.kind <> 'admin' THEN
    PERFORM audit('approval.refused', jsonb_build_object('id', p_id, 'reason', 'an agent cannot decide approvals'));
    RETURN jsonb_build_object('ok', false, 'error', 'NotAllowed',
                              'message', 'only humans (admins) decide approvals; an agent can never approve');
  END IF;
  SELECT * INTO a FROM approvals WHERE id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('ok', false, 'error', 'NotFound', 'message', 'no approval ' || p_id::text);
  END IF;
  IF a.state <> 'pending' THEN
    RETURN jsonb_build_object('ok', false, 'error', 'InvalidRequest',
                              'message', 'approval ' || p_id::text || ' is ' || a.state || ', not pending');
  END IF;
  UPDATE approvals SET state = CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END, decided_at = now(),
    decided_by = p.name, note = p_note WHERE id = p_id RETURNING * INTO a;
  PERFORM audit('approval.decided', jsonb_build_object('id', a.id, 'decision', a.state, 'note', p_note,
                                                       'agent', name_of(a.agent)));
  PERFORM pg_notify('keystone_wake_' || md5(a.agent), 'approval');  -- the agent's listener wakes its drain
  RETURN approval_json(a) || jsonb_build_object('ok', true);
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA keystone FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keystone.identity(), keystone.send(text, jsonb, text, text, int, uuid, uuid, uuid, float8, text),
  keystone.claim(int, float8, int), keystone.ack(uuid, text), keystone.get_message(uuid), keystone.thread(uuid),
  keystone.inbox(text[], int, text), keystone.outbox(int, text), keystone.take_reply(uuid), keystone.stop_waiting(uuid),
  keystone.hierarchy(uuid), keystone.stats(),
  keystone.shared_set(text, text, bigint), keystone.shared_delete(text, bigint), keystone.shared_get(text),
  keystone.shared_list(text), keystone.shared_history(text), keystone.shared_changes(text, bigint, int),
  keystone.audit_append(text, jsonb),
  keystone.policy_notify(jsonb), keystone.approval_request(uuid, text, text, jsonb, text, text, text),
  keystone.approval_consume(text, text), keystone.approval_get(uuid), keystone.approvals_list(text, text, int),
  keystone.approval_decide(uuid, boolean, text)
  TO keystone_agent, keystone_admin;
