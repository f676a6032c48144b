-- migration 16: producers: jr_enqueue_many() (many jobs in one call) and jr_job_status()
--
-- v16. jr_enqueue_many(kind, payloads, options): one kind, one options document, many payloads
-- (docs/job-model.md says why this shape). The rules of the options live once, in
-- jr_enqueue_ex() (v14, whatever later migrations make of it): jr_enqueue_many() never restates
-- them, it calls it.
--   - Options that make each job's behaviour depend on its payload (a key derived from it, or
--     a key looked up, locked, replaced or debounced: jr_enqueue_per_job_option_keys()) are
--     enqueued job by job through jr_enqueue_ex(), in order, in the caller's statement.
--   - Otherwise every job gets the same row but for its id and payload: the first one goes
--     through jr_enqueue_ex() (every check, the queue from jr_kinds, run_at, expiry, options),
--     the others are inserted by one statement as copies of that row (jsonb_populate_record
--     over the whole row type, so a column a later migration adds is copied too) with their
--     own id and payload. A later option whose effect depends on the payload belongs in
--     jr_enqueue_per_job_option_keys().
-- Runners are woken once: the insert trigger (v1) notifies once per statement and PostgreSQL
-- delivers one notification per channel and payload per transaction.
--
-- jr_job_status(id): the fields a producer polls for, from the live or the finished table (a
-- job is in exactly one of them in any snapshot); NULL for an id that is not there (never
-- enqueued, or pruned after its result_ttl).
--
-- Both run as their owner for jobrunner_producer, like jr_enqueue() (privileges.sql).

CREATE FUNCTION jr_enqueue_per_job_option_keys() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY['unique', 'unique_key', 'unique_for_seconds', 'unique_states', 'replace',
               'debounce_seconds', 'debounce_max_seconds']::text[]
$$;

CREATE FUNCTION jr_enqueue_many(p_kind text, p_payloads jsonb, p_options jsonb DEFAULT '{}')
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
  v_count   integer;
  v_bad     record;
  v_first   bigint;
  v_outcome text;
  v_seq     regclass := pg_get_serial_sequence('jr_jobs', 'id')::regclass;
BEGIN
  IF jsonb_typeof(p_payloads) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'jr_enqueue_many: ''payloads'' must be a JSON array of payload objects, '
      'got %', coalesce(jsonb_typeof(p_payloads), 'NULL') USING ERRCODE = '22023';
  END IF;
  v_count := jsonb_array_length(p_payloads);
  IF v_count > 100000 THEN
    RAISE EXCEPTION 'jr_enqueue_many: ''payloads'' has % entries, at most 100000 per call',
      v_count USING ERRCODE = '22023';
  END IF;
  SELECT e.ord - 1 AS idx, jsonb_typeof(e.value) AS type INTO v_bad
    FROM jsonb_array_elements(p_payloads) WITH ORDINALITY e(value, ord)
   WHERE jsonb_typeof(e.value) <> 'object'
   ORDER BY e.ord LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'jr_enqueue_many: payloads[%] must be a JSON object, got %', v_bad.idx,
      v_bad.type USING ERRCODE = '22023';
  END IF;
  IF v_count = 0 THEN
    -- Nothing to enqueue, but a bad kind or option is refused all the same (a call must not be
    -- right or wrong by how many payloads it happens to carry): jr_enqueue_ex() checks them,
    -- and this block undoes the job it inserted.
    BEGIN
      PERFORM jr_enqueue_ex(p_kind, '{}'::jsonb, p_options);
      RAISE EXCEPTION 'undo' USING ERRCODE = 'JR016';
    EXCEPTION WHEN SQLSTATE 'JR016' THEN
      NULL;
    END;
    RETURN;
  END IF;
  IF jsonb_typeof(p_options) = 'object' AND p_options ?| jr_enqueue_per_job_option_keys() THEN
    RETURN QUERY
      SELECT j.job_id FROM jsonb_array_elements(p_payloads) WITH ORDINALITY e(value, ord)
       CROSS JOIN LATERAL jr_enqueue_ex(p_kind, e.value, p_options) j
       ORDER BY e.ord;
    RETURN;
  END IF;
  SELECT j.job_id, j.outcome INTO v_first, v_outcome
    FROM jr_enqueue_ex(p_kind, p_payloads->0, p_options) j;
  RETURN NEXT v_first;
  IF v_outcome <> 'inserted' THEN
    -- Not a plain insert after all (an option of a later version): job by job.
    RETURN QUERY
      SELECT j.job_id FROM jsonb_array_elements(p_payloads) WITH ORDINALITY e(value, ord)
       CROSS JOIN LATERAL jr_enqueue_ex(p_kind, e.value, p_options) j
       WHERE e.ord > 1
       ORDER BY e.ord;
    RETURN;
  END IF;
  RETURN QUERY
    WITH e AS (
      SELECT x.ord, nextval(v_seq) AS id, x.value AS payload
        FROM jsonb_array_elements(p_payloads) WITH ORDINALITY x(value, ord)
       WHERE x.ord > 1),
    ins AS (
      INSERT INTO jr_jobs
      SELECT r.* FROM e CROSS JOIN jr_jobs t
       CROSS JOIN LATERAL jsonb_populate_record(
         t, jsonb_build_object('id', e.id, 'payload', e.payload)) r
       WHERE t.id = v_first)
    SELECT e.id FROM e ORDER BY e.ord;
END $$;

CREATE FUNCTION jr_job_status(p_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
           'id', a.id, 'kind', a.kind, 'queue', a.queue, 'state', a.state,
           'attempt', a.attempt, 'max_attempts', a.max_attempts, 'result', a.result,
           'last_error', a.errors -> -1, 'progress', a.progress, 'created_at', a.created_at,
           'run_at', a.run_at, 'started_at', a.started_at, 'finished_at', a.finished_at)
    FROM jr_jobs_all a
   WHERE a.id = p_id
$$;
