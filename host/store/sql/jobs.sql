-- Jobs in: enqueue (one, many by COPY, with uniqueness over a period), batches and workflows
-- (their logic is in SQL functions of migrations 14, 17 and 18), and reading jobs back.

-- Columns copied when a job moves to jr_jobs_done, and back when a dead letter is retried.
-- fragment: done_cols
id, queue, kind, payload, state, priority, attempt, max_attempts, result, progress, errors,
options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit

-- A job whose parents all completed already is not made to wait for the leader's dependency
-- pass: it is available (or scheduled) at once.
-- name: job_insert :prepared
INSERT INTO jr_jobs (queue, kind, payload, state, priority, base_priority, run_at,
                     max_attempts, timeout_ms, retry_schedule, expires_at, options,
                     unique_key, lock_key, lock_limit, depends_on)
VALUES (coalesce($2, (SELECT default_queue FROM jr_kinds WHERE kind = $1), 'default'),
        $1, $3::jsonb,
        CASE WHEN $16::bigint[] IS NOT NULL AND EXISTS (
                    SELECT 1 FROM unnest($16::bigint[]) p(id) WHERE NOT EXISTS (
                      SELECT 1 FROM jr_jobs_done d
                       WHERE d.id = p.id AND d.state = 'completed')) THEN 'waiting'
             WHEN $6::timestamptz IS NOT NULL OR $5::float8 > 0 THEN 'scheduled'
             ELSE 'available' END,
        $4, $4, coalesce($6::timestamptz, now() + make_interval(secs => $5::float8)),
        $7::integer, $8::bigint, $9::integer[],
        now() + make_interval(secs => $10::float8), $11::jsonb,
        CASE WHEN $13::boolean THEN md5($1 || ':' || $3::jsonb::text) ELSE $12::text END,
        $14::text, $15::integer, $16::bigint[])
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING id

-- Uniqueness over a period, replace and debounce: one implementation, in SQL (migration 14).
-- name: job_enqueue_ex
SELECT job_id, outcome FROM jr_enqueue_ex($1, $2::jsonb, $3::jsonb)

-- name: job_parents_missing
SELECT array_agg(x) FROM unnest($1::bigint[]) x
 WHERE NOT EXISTS (SELECT 1 FROM jr_jobs_all a WHERE a.id = x)

-- The live job holding the unique key an insert found taken.
-- name: job_unique_holder
SELECT id FROM jr_jobs
 WHERE unique_key = CASE WHEN $3 THEN md5($1 || ':' || $2::jsonb::text) ELSE $4 END

-- Ids for a COPY of $1 jobs, as ranges of consecutive ids (usually one), and now(). The
-- sequence is looked up once (InitPlan), not per row.
-- name: job_ids_reserve
SELECT min(v), count(*), (SELECT extract(epoch from now()))
  FROM (SELECT nextval((SELECT pg_get_serial_sequence('jr_jobs', 'id'))::regclass) AS v, g
          FROM generate_series(1, $1::bigint) g) s
 GROUP BY v - g ORDER BY 1

-- name: kind_default_queues
SELECT kind, default_queue FROM jr_kinds WHERE default_queue IS NOT NULL

-- A job's options, to enqueue it again. Finished jobs keep no base_priority: their priority
-- column is the one they ran with.
-- name: job_replay_source
SELECT kind, queue, payload::text, prio, max_attempts, timeout_ms,
       array_to_string(retry_schedule, ','), lock_key, lock_limit,
       options->>'rate_key', options->>'webhook',
       (options->>'result_ttl')::float8, (options->>'failure_ttl')::float8
  FROM (SELECT kind, queue, payload, coalesce(base_priority, priority) AS prio,
               max_attempts, timeout_ms, retry_schedule, lock_key, lock_limit, options
          FROM jr_jobs WHERE id = $1
        UNION ALL
        SELECT kind, queue, payload, priority, max_attempts, timeout_ms,
               retry_schedule, lock_key, lock_limit, options
          FROM jr_jobs_done WHERE id = $1) j

-- name: job_get
SELECT row_to_json(a)::text FROM jr_jobs_all a WHERE id = $1

-- name: job_list
SELECT row_to_json(a)::text FROM jr_jobs_all a
 WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2)
   AND ($3::text IS NULL OR queue = $3)
 ORDER BY id LIMIT $4

-- Committed asynchronously (the CTE, volatile, is evaluated whenever a row is updated):
-- progress is advisory, and a synchronous commit would hold the job's row through the WAL
-- flush, during which lease renewals skip it (job_heartbeat_held): a job reporting progress
-- every 250 ms on a stalled disk would lose its lease.
-- name: job_progress
WITH async AS (SELECT set_config('synchronous_commit', 'off', true))
UPDATE jr_jobs SET progress = jsonb_build_object('percent', $3::float8, 'step', $4::text,
                                                 'at', now())
  FROM async WHERE id = $1 AND attempt = $2 AND state = 'running'

-- name: batch_enqueue
SELECT jr_batch_enqueue($1, $2::jsonb, $3::jsonb, $4::jsonb, $5::jsonb)::text

-- name: batch_status
SELECT jr_batch_status($1)::text

-- name: workflow_enqueue
SELECT jr_workflow_enqueue($1::jsonb)::text

-- name: workflow_status
SELECT jr_workflow_status($1)::text

-- name: job_parent_results
SELECT jr_parent_results($1, $2::integer, $3::integer, $4::integer)::text
