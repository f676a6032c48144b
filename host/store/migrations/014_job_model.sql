-- migration 14: uniqueness over a period and states, replace and debounce (jr_enqueue_ex)
--
-- v14. The option keys of host/store/job_options.cpp, five more: unique_for_seconds,
-- unique_states, replace, debounce_seconds, debounce_max_seconds. jr_enqueue_ex() is v9's
-- jr_enqueue() (same parsing, same messages) plus those options, and it says what it did:
-- inserted, existing (a job with the key holds it: its id), replaced or debounced (a pending
-- holder's payload and run time were updated). jr_enqueue() returns its id, as before.
--
-- A key in "period mode" lives in options.unique_key of each job it was enqueued with (the
-- options document moves with the job to jr_jobs_done, through every finishing path), indexed
-- in both tables; the live-unique column jr_jobs.unique_key is left NULL for these jobs, since
-- several of them may share the key (a running one and its pending successor). Enqueues of one
-- key take its row lock in jr_unique_locks first; the pruner deletes old unlocked rows there.

CREATE TABLE jr_unique_locks (
  key       text PRIMARY KEY,
  locked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jr_jobs_period_key_idx ON jr_jobs ((options->>'unique_key'))
  WHERE options ? 'unique_key';
CREATE INDEX jr_jobs_done_period_key_idx ON jr_jobs_done ((options->>'unique_key'))
  WHERE options ? 'unique_key';

CREATE OR REPLACE FUNCTION jr_enqueue_option_keys() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY['queue', 'priority', 'delay_seconds', 'run_at', 'max_attempts',
               'timeout_seconds', 'retry_schedule', 'ttl_seconds', 'result_ttl_seconds',
               'failure_ttl_seconds', 'unique', 'unique_key', 'lock_key', 'lock_limit',
               'depends_on', 'webhook', 'unique_for_seconds', 'unique_states', 'replace',
               'debounce_seconds', 'debounce_max_seconds', 'rate_key']::text[]
$$;

CREATE FUNCTION jr_enqueue_ex(p_kind text, p_payload jsonb, p_options jsonb,
                              OUT job_id bigint, OUT outcome text)
LANGUAGE plpgsql AS $$
DECLARE
  v_for      float8;
  v_states   text[];
  v_replace  boolean := false;
  v_debounce float8;
  v_deb_max  float8;
  v_pkey     text;
  v_hold     record;
  v_new_run  timestamptz;
  o          jsonb := coalesce(p_options, '{}'::jsonb);
  v_payload  jsonb := coalesce(p_payload, '{}'::jsonb);
  v_unknown  text;
  v_queue    text;
  v_delay    float8 := 0;
  v_run_at   timestamptz;
  v_attempts integer;
  v_timeout  bigint;
  v_sched    integer[];
  v_ttl      float8;
  v_deps     bigint[];
  v_missing  text;
  v_unique   text;
  v_lock_key text;
  v_lock_lim integer;
  v_opts     jsonb := '{}'::jsonb;
  v_priority integer := 0;
  v_state    text;
  v_id       bigint;
  v_text     text;
BEGIN
  IF p_kind IS NULL OR p_kind !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
    RAISE EXCEPTION 'jr_enqueue: ''kind'' must be 1 to 128 characters of A-Z a-z 0-9 _ . : -, '
      'got %', coalesce(quote_literal(left(p_kind, 140)), 'NULL') USING ERRCODE = '22023';
  END IF;
  IF jsonb_typeof(v_payload) <> 'object' THEN
    RAISE EXCEPTION 'jr_enqueue: ''payload'' must be a JSON object, got %',
      jsonb_typeof(v_payload) USING ERRCODE = '22023';
  END IF;
  IF jsonb_typeof(o) <> 'object' THEN
    RAISE EXCEPTION 'jr_enqueue: ''options'' must be a JSON object, got %', jsonb_typeof(o)
      USING ERRCODE = '22023';
  END IF;
  SELECT min(k) INTO v_unknown FROM jsonb_object_keys(o) k
   WHERE k <> ALL (jr_enqueue_option_keys());
  IF v_unknown IS NOT NULL THEN
    RAISE EXCEPTION 'jr_enqueue: ''%'' is not a known job option', v_unknown
      USING ERRCODE = '22023';
  END IF;
  IF o ? 'queue' THEN
    v_queue := jr_option_text('queue', o->'queue', 1024);
  END IF;
  v_queue := coalesce(v_queue, (SELECT default_queue FROM jr_kinds WHERE kind = p_kind),
                      'default');
  IF o ? 'priority' THEN
    v_priority := jr_option_integer('priority', o->'priority', -1000000, 1000000);
  END IF;
  IF o ? 'delay_seconds' THEN
    v_delay := jr_option_seconds('delay_seconds', o->'delay_seconds', 0);
  END IF;
  IF o ? 'run_at' THEN
    v_text := CASE WHEN jsonb_typeof(o->'run_at') = 'string' THEN o->>'run_at' END;
    IF v_text IS NULL OR v_text !~ ('^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?'
                                    '([Zz]|[+-]\d{2}(:?\d{2})?)?)?$') THEN
      RAISE EXCEPTION 'jr_enqueue: ''run_at'' must be an ISO 8601 time such as '
        '2026-11-24T09:00:00Z, got %', left((o->'run_at')::text, 80) USING ERRCODE = '22023';
    END IF;
    v_run_at := v_text::timestamptz;
  END IF;
  IF o ? 'max_attempts' THEN
    v_attempts := jr_option_integer('max_attempts', o->'max_attempts', 1, 1000000);
  END IF;
  IF o ? 'timeout_seconds' THEN
    v_timeout := floor(jr_option_seconds('timeout_seconds', o->'timeout_seconds', 0.001) * 1000);
  END IF;
  IF o ? 'retry_schedule' THEN
    IF jsonb_typeof(o->'retry_schedule') = 'array' THEN
      IF jsonb_array_length(o->'retry_schedule') > 1000 THEN
        RAISE EXCEPTION 'jr_enqueue: ''retry_schedule'' has more than 1000 entries'
          USING ERRCODE = '22023';
      END IF;
      v_sched := ARRAY(SELECT jr_option_integer('retry_schedule', x, 0, 2147483647)
                         FROM jsonb_array_elements(o->'retry_schedule') x);
    ELSIF jsonb_typeof(o->'retry_schedule') = 'string' THEN
      IF EXISTS (SELECT 1 FROM regexp_split_to_table(o->>'retry_schedule', ',') x
                  WHERE trim(x) <> '' AND (trim(x) !~ '^[+-]?\d{1,10}$'
                                           OR trim(x)::bigint NOT BETWEEN 0 AND 2147483647)) THEN
        RAISE EXCEPTION 'jr_enqueue: ''retry_schedule'' invalid retry schedule ''%'' (expected '
          'seconds separated by commas, e.g. 60,300,900)', left(o->>'retry_schedule', 80)
          USING ERRCODE = '22023';
      END IF;
      v_sched := ARRAY(SELECT trim(x)::integer
                         FROM regexp_split_to_table(o->>'retry_schedule', ',') x
                        WHERE trim(x) <> '');
    ELSE
      RAISE EXCEPTION 'jr_enqueue: ''retry_schedule'' must be "60,300,900" or [60, 300, 900], '
        'got %', jsonb_typeof(o->'retry_schedule') USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'ttl_seconds' THEN
    v_ttl := jr_option_seconds('ttl_seconds', o->'ttl_seconds', 0);
  END IF;
  IF o ? 'result_ttl_seconds' THEN
    v_opts := v_opts || jsonb_build_object('result_ttl',
      jr_option_seconds('result_ttl_seconds', o->'result_ttl_seconds', 0));
  END IF;
  IF o ? 'failure_ttl_seconds' THEN
    v_opts := v_opts || jsonb_build_object('failure_ttl',
      jr_option_seconds('failure_ttl_seconds', o->'failure_ttl_seconds', 0));
  END IF;
  IF o ? 'unique' AND jsonb_typeof(o->'unique') <> 'boolean' THEN
    RAISE EXCEPTION 'jr_enqueue: ''unique'' must be true or false, got %',
      jsonb_typeof(o->'unique') USING ERRCODE = '22023';
  END IF;
  IF o ? 'unique_key' THEN
    IF coalesce((o->>'unique')::boolean, false) THEN
      RAISE EXCEPTION 'jr_enqueue: ''unique_key'' cannot be combined with "unique": true'
        USING ERRCODE = '22023';
    END IF;
    v_unique := jr_option_text('unique_key', o->'unique_key', 1024);
  END IF;
  IF coalesce((o->>'unique')::boolean, false) THEN
    v_unique := md5(p_kind || ':' || v_payload::text);
  END IF;
  IF o ? 'lock_key' THEN
    v_lock_key := jr_option_text('lock_key', o->'lock_key', 1024);
  END IF;
  IF o ? 'lock_limit' THEN
    IF v_lock_key IS NULL THEN
      RAISE EXCEPTION 'jr_enqueue: ''lock_limit'' needs lock_key' USING ERRCODE = '22023';
    END IF;
    v_lock_lim := jr_option_integer('lock_limit', o->'lock_limit', 1, 1000000);
  END IF;
  IF o ? 'depends_on' THEN
    IF jsonb_typeof(o->'depends_on') <> 'array' THEN
      RAISE EXCEPTION 'jr_enqueue: ''depends_on'' must be an array of job ids, got %',
        jsonb_typeof(o->'depends_on') USING ERRCODE = '22023';
    END IF;
    IF jsonb_array_length(o->'depends_on') > 10000 THEN
      RAISE EXCEPTION 'jr_enqueue: ''depends_on'' has more than 10000 job ids'
        USING ERRCODE = '22023';
    END IF;
    IF jsonb_array_length(o->'depends_on') > 0 THEN
      v_deps := ARRAY(SELECT jr_option_integer('depends_on', x, 1, 9223372036854775807)
                        FROM jsonb_array_elements(o->'depends_on') x);
      SELECT string_agg(x::text, ',') INTO v_missing FROM unnest(v_deps) x
       WHERE NOT EXISTS (SELECT 1 FROM jr_jobs_all a WHERE a.id = x);
      IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'jr_enqueue: depends_on names jobs that do not exist: %', v_missing
          USING ERRCODE = '22023';
      END IF;
    END IF;
  END IF;
  IF o ? 'unique_for_seconds' THEN
    v_for := jr_option_seconds('unique_for_seconds', o->'unique_for_seconds', 0.001);
  END IF;
  IF o ? 'unique_states' THEN
    IF jsonb_typeof(o->'unique_states') IS DISTINCT FROM 'array'
       OR jsonb_array_length(o->'unique_states') NOT BETWEEN 1 AND 64
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(o->'unique_states') x
                   WHERE jsonb_typeof(x) <> 'string'
                      OR x #>> '{}' NOT IN ('waiting', 'scheduled', 'available', 'running',
                                            'retryable', 'completed', 'discarded', 'cancelled'))
    THEN
      RAISE EXCEPTION 'jr_enqueue: ''unique_states'' must be a non-empty array of job states '
        '(waiting, scheduled, available, running, retryable, completed, discarded, cancelled), '
        'got %', left((o->'unique_states')::text, 80) USING ERRCODE = '22023';
    END IF;
    v_states := ARRAY(SELECT DISTINCT x #>> '{}' FROM jsonb_array_elements(o->'unique_states') x);
  END IF;
  IF o ? 'replace' THEN
    IF jsonb_typeof(o->'replace') <> 'boolean' THEN
      RAISE EXCEPTION 'jr_enqueue: ''replace'' must be true or false, got %',
        jsonb_typeof(o->'replace') USING ERRCODE = '22023';
    END IF;
    v_replace := (o->>'replace')::boolean;
  END IF;
  IF o ? 'debounce_seconds' THEN
    v_debounce := jr_option_seconds('debounce_seconds', o->'debounce_seconds', 0.001);
    IF o ? 'delay_seconds' OR o ? 'run_at' THEN
      RAISE EXCEPTION 'jr_enqueue: ''debounce_seconds'' cannot be combined with delay_seconds '
        'or run_at' USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'debounce_max_seconds' THEN
    IF v_debounce IS NULL THEN
      RAISE EXCEPTION 'jr_enqueue: ''debounce_max_seconds'' needs debounce_seconds'
        USING ERRCODE = '22023';
    END IF;
    v_deb_max := jr_option_seconds('debounce_max_seconds', o->'debounce_max_seconds', 0.001);
    IF v_deb_max < v_debounce THEN
      RAISE EXCEPTION 'jr_enqueue: ''debounce_max_seconds'' must be at least debounce_seconds'
        USING ERRCODE = '22023';
    END IF;
  END IF;
  IF o ? 'rate_key' THEN
    v_text := jr_option_text('rate_key', o->'rate_key', 1024);
    IF v_text LIKE 'queue:%' OR v_text LIKE 'kind:%' OR strpos(v_text, '*') > 0 THEN
      RAISE EXCEPTION 'jr_enqueue: ''rate_key'' must not start with queue: or kind: nor contain *, '
        'got %', left((o->'rate_key')::text, 80) USING ERRCODE = '22023';
    END IF;
    v_opts := v_opts || jsonb_build_object('rate_key', v_text);
  END IF;
  IF o ? 'webhook' THEN
    v_text := jr_option_text('webhook', o->'webhook', 8192);
    IF v_text !~ '^https?://[^/]' THEN
      RAISE EXCEPTION 'jr_enqueue: ''webhook'' webhook URL must start with http:// or https:// '
        'and name a host' USING ERRCODE = '22023';
    END IF;
    IF v_text ~ '\s' THEN
      RAISE EXCEPTION 'jr_enqueue: ''webhook'' webhook URL contains a space or a control '
        'character' USING ERRCODE = '22023';
    END IF;
    v_opts := v_opts || jsonb_build_object('webhook', v_text);
  END IF;
  IF v_for IS NOT NULL OR v_states IS NOT NULL OR v_replace OR v_debounce IS NOT NULL THEN
    -- Uniqueness over a period and states (docs/job-model.md). The key lives in
    -- options.unique_key (indexed in both job tables), so finished jobs keep it; the enqueues of
    -- one key queue up on its row in jr_unique_locks (READ COMMITTED: each statement below
    -- then sees what the previous holder committed; REPEATABLE READ or SERIALIZABLE: a
    -- concurrent enqueue of the key fails with a serialization error instead of a duplicate).
    v_pkey := coalesce(v_unique, md5(p_kind || ':' || v_payload::text));
    v_unique := NULL;
    v_states := coalesce(v_states, CASE WHEN v_for IS NOT NULL
      THEN ARRAY['waiting', 'scheduled', 'available', 'running', 'retryable', 'completed']
      ELSE ARRAY['waiting', 'scheduled', 'available', 'running', 'retryable'] END);
    v_opts := v_opts || jsonb_build_object('unique_key', v_pkey);
    IF v_debounce IS NOT NULL THEN
      v_delay := v_debounce;
      v_deb_max := coalesce(v_deb_max, 10 * v_debounce);
    END IF;
    INSERT INTO jr_unique_locks AS l (key) VALUES (v_pkey)
    ON CONFLICT (key) DO UPDATE SET locked_at = now();
    FOR tries IN 1..10 LOOP
      SELECT h.id, h.state, h.created_at INTO v_hold FROM (
        SELECT j.id, j.state, j.created_at FROM jr_jobs j
         WHERE j.options ? 'unique_key' AND j.options->>'unique_key' = v_pkey
        UNION ALL
        SELECT j.id, j.state, j.created_at FROM jr_jobs j WHERE j.unique_key = v_pkey
        UNION ALL
        SELECT d.id, d.state, d.created_at FROM jr_jobs_done d
         WHERE d.options ? 'unique_key' AND d.options->>'unique_key' = v_pkey) h
       WHERE h.state = ANY (v_states)
         AND (v_for IS NULL OR h.created_at > now() - make_interval(secs => v_for))
       ORDER BY h.state IN ('waiting', 'scheduled', 'available', 'retryable') DESC, h.id DESC
       LIMIT 1;
      EXIT WHEN NOT FOUND;
      IF v_replace OR v_debounce IS NOT NULL THEN
        IF v_hold.state IN ('waiting', 'scheduled', 'available', 'retryable') THEN
          v_new_run := CASE WHEN v_debounce IS NOT NULL
            THEN least(now() + make_interval(secs => v_debounce),
                       v_hold.created_at + make_interval(secs => v_deb_max))
            ELSE coalesce(v_run_at, now() + make_interval(secs => v_delay)) END;
          UPDATE jr_jobs j SET payload = v_payload, run_at = v_new_run,
                 state = CASE WHEN j.state NOT IN ('scheduled', 'available') THEN j.state
                              WHEN v_new_run > now() THEN 'scheduled' ELSE 'available' END
           WHERE j.id = v_hold.id AND j.state IN ('waiting', 'scheduled', 'available', 'retryable')
          RETURNING j.id INTO job_id;
          IF job_id IS NOT NULL THEN
            outcome := CASE WHEN v_debounce IS NOT NULL THEN 'debounced' ELSE 'replaced' END;
            RETURN;
          END IF;
          CONTINUE;  -- a runner claimed it meanwhile: look again
        ELSIF v_hold.state = 'running' THEN
          EXIT;  -- it read the old payload: a new job carries the new one
        END IF;
      END IF;
      job_id := v_hold.id;
      outcome := 'existing';
      RETURN;
    END LOOP;
  END IF;
  v_state := CASE WHEN v_deps IS NOT NULL THEN 'waiting'
                  WHEN v_run_at IS NOT NULL OR v_delay > 0 THEN 'scheduled'
                  ELSE 'available' END;
  FOR tries IN 1..10 LOOP
    INSERT INTO jr_jobs (queue, kind, payload, state, priority, base_priority, run_at,
                         max_attempts, timeout_ms, retry_schedule, expires_at, options,
                         unique_key, lock_key, lock_limit, depends_on)
    VALUES (v_queue, p_kind, v_payload, v_state, v_priority, v_priority,
            coalesce(v_run_at, now() + make_interval(secs => v_delay)),
            v_attempts, v_timeout, v_sched, now() + make_interval(secs => v_ttl), v_opts,
            v_unique, v_lock_key, v_lock_lim, v_deps)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING jr_jobs.id INTO v_id;
    IF v_id IS NOT NULL THEN
      job_id := v_id;
      outcome := 'inserted';
      RETURN;
    END IF;
    -- A live job holds the unique key: its id is the answer (unless it just finished).
    SELECT id INTO v_id FROM jr_jobs WHERE unique_key = v_unique;
    IF v_id IS NOT NULL THEN
      job_id := v_id;
      outcome := 'existing';
      RETURN;
    END IF;
  END LOOP;
  RAISE EXCEPTION 'jr_enqueue: unique insert kept racing; giving up' USING ERRCODE = '40001';
END $$;

CREATE OR REPLACE FUNCTION jr_enqueue(p_kind text, p_payload jsonb, p_options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE sql AS $$
  SELECT job_id FROM jr_enqueue_ex(p_kind, p_payload, p_options)
$$;
