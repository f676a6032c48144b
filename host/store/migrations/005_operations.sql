-- migration 5: operations: jr_enqueue() for SQL producers, webhook outbox
--
-- v5. jr_enqueue(kind, payload, options) inserts exactly like Store::JobInsertEx (the prepared
-- statement "job_insert" in pg_store.cpp): default queue from jr_kinds, waiting / scheduled /
-- available, base priority, unique keys (returns the live job's id), lock keys, dependencies,
-- ttl and retention options. It runs in the caller's transaction: rolled back, no job.
--
-- Webhooks: jr_webhooks holds per-kind URLs (published by the runners from their config); a
-- per-job URL sits in options->'webhook'. A statement trigger on jr_jobs_done writes one outbox
-- row per completed or dead-lettered job with a URL, in the transaction that finishes the job,
-- so a notification is never lost nor sent for a finish that rolled back. Runners deliver them
-- in the background (host/ops/webhooks.cpp).

CREATE FUNCTION jr_enqueue(p_kind text, p_payload jsonb, p_options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  o          jsonb := coalesce(p_options, '{}'::jsonb);
  v_unknown  text;
  v_queue    text;
  v_delay    float8;
  v_run_at   timestamptz;
  v_sched    integer[];
  v_deps     bigint[];
  v_missing  text;
  v_unique   text;
  v_opts     jsonb := '{}'::jsonb;
  v_priority integer;
  v_state    text;
  v_id       bigint;
BEGIN
  IF p_kind IS NULL OR p_kind = '' THEN
    RAISE EXCEPTION 'jr_enqueue: kind must not be empty' USING ERRCODE = '22023';
  END IF;
  IF jsonb_typeof(o) <> 'object' THEN
    RAISE EXCEPTION 'jr_enqueue: options must be a JSON object' USING ERRCODE = '22023';
  END IF;
  SELECT string_agg(k, ', ') INTO v_unknown FROM jsonb_object_keys(o) k
   WHERE k NOT IN ('queue', 'priority', 'delay_seconds', 'run_at', 'max_attempts',
                   'timeout_seconds', 'retry_schedule', 'ttl_seconds', 'result_ttl_seconds',
                   'failure_ttl_seconds', 'unique', 'unique_key', 'lock_key', 'lock_limit',
                   'depends_on', 'webhook');
  IF v_unknown IS NOT NULL THEN
    RAISE EXCEPTION 'jr_enqueue: unknown option(s): %', v_unknown USING ERRCODE = '22023';
  END IF;
  v_queue := coalesce(o->>'queue', (SELECT default_queue FROM jr_kinds WHERE kind = p_kind),
                      'default');
  v_priority := coalesce((o->>'priority')::integer, 0);
  v_delay := coalesce((o->>'delay_seconds')::float8, 0);
  v_run_at := (o->>'run_at')::timestamptz;
  IF o ? 'retry_schedule' THEN
    IF jsonb_typeof(o->'retry_schedule') = 'array' THEN
      v_sched := ARRAY(SELECT x::integer FROM jsonb_array_elements_text(o->'retry_schedule') x);
    ELSE
      v_sched := ARRAY(SELECT trim(x)::integer
                         FROM regexp_split_to_table(o->>'retry_schedule', ',') x
                        WHERE trim(x) <> '');
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(v_sched) s WHERE s < 0) THEN
      RAISE EXCEPTION 'jr_enqueue: retry_schedule must hold seconds >= 0' USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'depends_on' AND jsonb_typeof(o->'depends_on') = 'array'
     AND jsonb_array_length(o->'depends_on') > 0 THEN
    v_deps := ARRAY(SELECT x::bigint FROM jsonb_array_elements_text(o->'depends_on') x);
    SELECT string_agg(x::text, ',') INTO v_missing FROM unnest(v_deps) x
     WHERE NOT EXISTS (SELECT 1 FROM jr_jobs_all a WHERE a.id = x);
    IF v_missing IS NOT NULL THEN
      RAISE EXCEPTION 'jr_enqueue: depends_on names jobs that do not exist: %', v_missing
        USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'result_ttl_seconds' THEN
    v_opts := v_opts || jsonb_build_object('result_ttl', (o->>'result_ttl_seconds')::float8);
  END IF;
  IF o ? 'failure_ttl_seconds' THEN
    v_opts := v_opts || jsonb_build_object('failure_ttl', (o->>'failure_ttl_seconds')::float8);
  END IF;
  IF o ? 'webhook' THEN
    v_opts := v_opts || jsonb_build_object('webhook', o->>'webhook');
  END IF;
  v_unique := CASE WHEN coalesce((o->>'unique')::boolean, false)
                   THEN md5(p_kind || ':' || p_payload::text) ELSE o->>'unique_key' END;
  v_state := CASE WHEN v_deps IS NOT NULL THEN 'waiting'
                  WHEN v_run_at IS NOT NULL OR v_delay > 0 THEN 'scheduled'
                  ELSE 'available' END;
  FOR tries IN 1..10 LOOP
    INSERT INTO jr_jobs (queue, kind, payload, state, priority, base_priority, run_at,
                         max_attempts, timeout_ms, retry_schedule, expires_at, options,
                         unique_key, lock_key, lock_limit, depends_on)
    VALUES (v_queue, p_kind, coalesce(p_payload, '{}'::jsonb), v_state, v_priority, v_priority,
            coalesce(v_run_at, now() + make_interval(secs => v_delay)),
            (o->>'max_attempts')::integer,
            floor((o->>'timeout_seconds')::float8 * 1000)::bigint, v_sched,
            now() + make_interval(secs => (o->>'ttl_seconds')::float8), v_opts,
            v_unique, o->>'lock_key', (o->>'lock_limit')::integer, v_deps)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
      RETURN v_id;
    END IF;
    -- A live job holds the unique key: its id is the answer (unless it just finished).
    SELECT id INTO v_id FROM jr_jobs WHERE unique_key = v_unique;
    IF v_id IS NOT NULL THEN
      RETURN v_id;
    END IF;
  END LOOP;
  RAISE EXCEPTION 'jr_enqueue: unique insert kept racing; giving up' USING ERRCODE = '40001';
END $$;

CREATE TABLE jr_webhooks (
  kind       text PRIMARY KEY,
  url        text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jr_webhook_deliveries (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id          bigint      NOT NULL,
  event           text        NOT NULL,
  url             text        NOT NULL,
  body            text        NOT NULL,
  state           text        NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_by       text,
  locked_until    timestamptz,
  last_status     integer,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz
);
CREATE INDEX jr_webhook_deliveries_due_idx ON jr_webhook_deliveries (next_attempt_at)
  WHERE state = 'pending';
CREATE INDEX jr_webhook_deliveries_job_idx ON jr_webhook_deliveries (job_id);

CREATE FUNCTION jr_webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO jr_webhook_deliveries (job_id, event, url, body)
  SELECT n.id,
         CASE n.state WHEN 'completed' THEN 'job.completed' ELSE 'job.dead_lettered' END,
         coalesce(n.options->>'webhook', w.url),
         jsonb_build_object(
           'event', CASE n.state WHEN 'completed' THEN 'job.completed'
                                 ELSE 'job.dead_lettered' END,
           'job', jsonb_build_object('id', n.id, 'kind', n.kind, 'queue', n.queue,
                                     'state', n.state, 'attempt', n.attempt,
                                     'result', n.result, 'errors', n.errors,
                                     'created_at', n.created_at, 'started_at', n.started_at,
                                     'finished_at', n.finished_at))::text
    FROM jr_done_new n LEFT JOIN jr_webhooks w ON w.kind = n.kind
   WHERE n.state IN ('completed', 'discarded')
     AND coalesce(n.options->>'webhook', w.url) IS NOT NULL;
  IF FOUND THEN
    PERFORM pg_notify('jr_webhooks', '');
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER jr_jobs_done_webhooks AFTER INSERT ON jr_jobs_done
  REFERENCING NEW TABLE AS jr_done_new
  FOR EACH STATEMENT EXECUTE FUNCTION jr_webhook_outbox();
