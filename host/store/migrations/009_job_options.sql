-- migration 9: job options checked in jr_enqueue(), runner of each attempt, finished timeout_ms
--
-- v9. jr_enqueue() with the rules of the one C++ parser (host/store/job_options.cpp): the same
-- option keys (jr_enqueue_option_keys(), compared with job_option_keys() by the tests), the same
-- types and ranges (no integer wraps, durations up to 100 years, ISO 8601 times, a kind as a
-- plugin declares it, an object payload), refused with SQLSTATE 22023 and a message naming the
-- option. Also: the runner (worker id and host) of each attempt — in the error entry of every
-- failed attempt and in jr_jobs_done.worker_id/worker_host for the completed one — and
-- jr_jobs_all showing a finished job's timeout_ms (it showed NULL).

ALTER TABLE jr_jobs_done ADD COLUMN worker_id text, ADD COLUMN worker_host text;

CREATE OR REPLACE VIEW jr_jobs_all AS
  SELECT id, queue, kind, payload, state, priority, attempt, max_attempts, NULL::jsonb AS result,
         progress, errors, options, created_at, started_at, NULL::timestamptz AS finished_at,
         run_at, lease_owner, lease_expires_at, timeout_ms,
         lease_owner AS worker_id,
         (SELECT w.host FROM jr_workers w WHERE w.id = jr_jobs.lease_owner) AS worker_host
    FROM jr_jobs
  UNION ALL
  SELECT id, queue, kind, payload, state, priority, attempt, max_attempts, result, progress,
         errors, options, created_at, started_at, finished_at, NULL, NULL, NULL, timeout_ms,
         worker_id, worker_host
    FROM jr_jobs_done;

CREATE FUNCTION jr_enqueue_option_keys() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY['queue', 'priority', 'delay_seconds', 'run_at', 'max_attempts',
               'timeout_seconds', 'retry_schedule', 'ttl_seconds', 'result_ttl_seconds',
               'failure_ttl_seconds', 'unique', 'unique_key', 'lock_key', 'lock_limit',
               'depends_on', 'webhook']::text[]
$$;

-- An integer option in [lo, hi]: exact (numeric), so nothing wraps.
CREATE FUNCTION jr_option_integer(p_name text, v jsonb, lo numeric, hi numeric)
RETURNS numeric LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE n numeric;
BEGIN
  IF jsonb_typeof(v) = 'number' THEN
    n := v::text::numeric;
    IF n = trunc(n) AND n BETWEEN lo AND hi THEN
      RETURN n;
    END IF;
  END IF;
  RAISE EXCEPTION 'jr_enqueue: ''%'' must be an integer between % and %, got %', p_name, lo, hi,
    left(v::text, 80) USING ERRCODE = '22023';
END $$;

-- Seconds in [lo, 100 years].
CREATE FUNCTION jr_option_seconds(p_name text, v jsonb, lo float8)
RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE n numeric;
BEGIN
  IF jsonb_typeof(v) = 'number' THEN
    n := v::text::numeric;  -- exact: 1e400 is out of range, not a float8 overflow
    IF n >= lo AND n <= 3155760000 THEN
      RETURN n::float8;
    END IF;
  END IF;
  RAISE EXCEPTION 'jr_enqueue: ''%'' must be between % and 3155760000 seconds (100 years), got %',
    p_name, lo, CASE WHEN jsonb_typeof(v) = 'number' AND abs(n) < 1e308
                     THEN (n::float8)::text ELSE left(v::text, 80) END
    USING ERRCODE = '22023';
END $$;

-- A name-like text option: a non-empty string of at most p_max bytes, no control characters.
CREATE FUNCTION jr_option_text(p_name text, v jsonb, p_max integer)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE s text;
BEGIN
  IF jsonb_typeof(v) IS DISTINCT FROM 'string' THEN
    RAISE EXCEPTION 'jr_enqueue: ''%'' must be a string, got %', p_name, jsonb_typeof(v)
      USING ERRCODE = '22023';
  END IF;
  s := v #>> '{}';
  IF s = '' THEN
    RAISE EXCEPTION 'jr_enqueue: ''%'' must not be empty', p_name USING ERRCODE = '22023';
  END IF;
  IF octet_length(s) > p_max THEN
    RAISE EXCEPTION 'jr_enqueue: ''%'' is longer than % bytes (%)', p_name, p_max,
      octet_length(s) USING ERRCODE = '22023';
  END IF;
  IF s ~ '[\x01-\x1f\x7f]' THEN
    RAISE EXCEPTION 'jr_enqueue: ''%'' contains a control character', p_name
      USING ERRCODE = '22023';
  END IF;
  RETURN s;
END $$;

CREATE OR REPLACE FUNCTION jr_enqueue(p_kind text, p_payload jsonb, p_options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
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
