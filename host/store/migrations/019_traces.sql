-- migration 19: OpenTelemetry traces: the traceparent job option in jr_enqueue_ex()
--
-- v19. The traceparent option (docs/job-model.md "OpenTelemetry traces").
--   - jr_enqueue_option_keys() is recreated from its own current result plus 'traceparent', so
--     this migration does not restate (and cannot undo) keys another migration added.
--   - The rules of every other option stay where they are: the jr_enqueue_ex() that the earlier
--     migrations left is renamed jr_enqueue_ex_untraced(), and a new jr_enqueue_ex() calls it
--     without the traceparent key, then writes the checked value into the options of the job it
--     inserted (same transaction: no runner can see the job before). A job that already existed
--     (unique), or was replaced or debounced, keeps its own. jr_enqueue(), jr_enqueue_many()
--     and jr_batch_enqueue() all go through jr_enqueue_ex(), so they take the option too. A
--     later migration that changes the other rules replaces jr_enqueue_ex_untraced().
--   - jr_traceparent_check() gives the reasons of trace::traceparent_refusal() in the same
--     order and words (tests/ops/ops_db_test.cpp compares them).

DO $jr$
DECLARE
  k text[] := jr_enqueue_option_keys();
BEGIN
  IF NOT 'traceparent' = ANY (k) THEN
    EXECUTE format('CREATE OR REPLACE FUNCTION jr_enqueue_option_keys() RETURNS text[] '
                   'LANGUAGE sql IMMUTABLE AS %L',
                   format('SELECT %L::text[]', k || 'traceparent'::text));
  END IF;
END $jr$;

CREATE FUNCTION jr_traceparent_check(v jsonb) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  t text;
BEGIN
  IF jsonb_typeof(v) IS DISTINCT FROM 'string' THEN
    RAISE EXCEPTION 'jr_enqueue: ''traceparent'' must be a string, got %',
      coalesce(jsonb_typeof(v), 'NULL') USING ERRCODE = '22023';
  END IF;
  t := v #>> '{}';
  IF octet_length(t) <> 55 THEN
    RAISE EXCEPTION 'jr_enqueue: ''traceparent'' must be 55 characters (00-<32 hex trace id>-<16 '
      'hex parent id>-<2 hex flags>), has %, got %', octet_length(t), left(v::text, 80)
      USING ERRCODE = '22023';
  END IF;
  IF t !~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' THEN
    RAISE EXCEPTION 'jr_enqueue: ''traceparent'' must be 00-<32 hex trace id>-<16 hex parent '
      'id>-<2 hex flags> in lowercase hex, got %', v::text USING ERRCODE = '22023';
  END IF;
  IF left(t, 2) <> '00' THEN
    RAISE EXCEPTION 'jr_enqueue: ''traceparent'' has version %, not 00, got %', left(t, 2),
      v::text USING ERRCODE = '22023';
  END IF;
  IF substr(t, 4, 32) = repeat('0', 32) THEN
    RAISE EXCEPTION 'jr_enqueue: ''traceparent'' has an all-zero trace id, got %', v::text
      USING ERRCODE = '22023';
  END IF;
  IF substr(t, 37, 16) = repeat('0', 16) THEN
    RAISE EXCEPTION 'jr_enqueue: ''traceparent'' has an all-zero parent id, got %', v::text
      USING ERRCODE = '22023';
  END IF;
  RETURN t;
END $$;

ALTER FUNCTION jr_enqueue_ex(text, jsonb, jsonb) RENAME TO jr_enqueue_ex_untraced;

CREATE FUNCTION jr_enqueue_ex(p_kind text, p_payload jsonb, p_options jsonb,
                              OUT job_id bigint, OUT outcome text)
LANGUAGE plpgsql AS $$
DECLARE
  v_tp text;
BEGIN
  -- With an unknown key among the options, the rules' own check names it.
  IF jsonb_typeof(p_options) = 'object' AND p_options ? 'traceparent'
     AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(p_options) k
                      WHERE k <> ALL (jr_enqueue_option_keys())) THEN
    v_tp := jr_traceparent_check(p_options -> 'traceparent');
    SELECT e.job_id, e.outcome INTO job_id, outcome
      FROM jr_enqueue_ex_untraced(p_kind, p_payload, p_options - 'traceparent') e;
    IF outcome = 'inserted' THEN
      UPDATE jr_jobs j SET options = j.options || jsonb_build_object('traceparent', v_tp)
       WHERE j.id = job_id;
    END IF;
    RETURN;
  END IF;
  SELECT e.job_id, e.outcome INTO job_id, outcome
    FROM jr_enqueue_ex_untraced(p_kind, p_payload, p_options) e;
END $$;
