-- What operators do to jobs and queues (`runner jobs`, `runner queue`, `runner dlq`, `runner
-- rate-limit`, the HTTP API): cancel, retry, dead letters, pauses, rate limits; and what every
-- runner publishes about itself (jr_workers, jr_kinds).

-- The cancelled job's row in jr_jobs_done, from the CTE `x` of jobs just deleted; @WHY@ is the
-- message of its error entry.
-- fragment: cancelled_row
INSERT INTO jr_jobs_done ({{done_cols}})
SELECT id, queue, kind, payload, 'cancelled', priority, attempt, max_attempts, NULL,
       progress, errors || jsonb_build_array(jsonb_build_object('attempt', attempt,
       'at', now(), 'kind', 'cancelled', 'message', @WHY@)),
       options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit FROM x
RETURNING id

-- name: job_cancel_waiting
WITH x AS (DELETE FROM jr_jobs WHERE id = $1 AND state <> 'running' RETURNING *)
{{cancelled_row WHY='cancelled on request before it ran'}}

-- name: job_cancel_request
UPDATE jr_jobs SET cancel_requested = true WHERE id = $1 AND state = 'running' RETURNING id

-- name: job_cancel_notify
SELECT pg_notify('jr_cancel', $1::text)

-- name: job_finished_exists
SELECT 1 FROM jr_jobs_done WHERE id = $1

-- The jobs `runner jobs cancel` selects: $1 queue, $2 kind, $3 state (NULL: any).
-- fragment: cancel_many_where
queue = $1 AND ($2::text IS NULL OR kind = $2) AND state <> 'running'
AND ($3::text IS NULL OR state = $3)

-- name: job_cancel_many_count
SELECT count(*) FROM jr_jobs WHERE {{cancel_many_where}}

-- name: job_cancel_many
WITH x AS (DELETE FROM jr_jobs WHERE {{cancel_many_where}} RETURNING *),
ins AS ({{cancelled_row WHY='cancelled on request before it ran (runner jobs cancel)'}})
SELECT count(*) FROM ins

-- Moves finished jobs of the CTE `x` (deleted from jr_jobs_done) back to jr_jobs, available
-- now, with at least one attempt left.
-- fragment: revive_rows
INSERT INTO jr_jobs (id, queue, kind, payload, state, priority, run_at, attempt,
                     max_attempts, timeout_ms, retry_schedule, errors, options, created_at,
                     lock_key, lock_limit)
SELECT id, queue, kind, payload, 'available', priority, now(), attempt,
       greatest(coalesce(max_attempts, (SELECT k.max_attempts FROM jr_kinds k
                                         WHERE k.kind = x.kind), 25), attempt + 1),
       timeout_ms, retry_schedule, errors, options, created_at, lock_key, lock_limit FROM x
RETURNING id

-- `runner jobs retry ID` on a dead letter or a cancelled job ($1).
-- name: job_revive
WITH x AS (DELETE FROM jr_jobs_done WHERE id = $1 AND state IN ('discarded', 'cancelled')
           RETURNING *)
{{revive_rows}}

-- `runner jobs retry ID` on a job waiting for its next attempt: now.
-- name: job_retry_now
UPDATE jr_jobs SET state = 'available', run_at = now()
 WHERE id = $1 AND state IN ('scheduled', 'retryable') RETURNING id

-- Dead letters selected by `runner dlq`: $2 kind, $3 queue, $4 since, $5 before, $6 ids
-- (NULL: every job the other filters match); $1 is the limit.
-- fragment: dlq_where
state = 'discarded' AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR queue = $3)
AND ($4::timestamptz IS NULL OR finished_at >= $4) AND ($5::timestamptz IS NULL OR finished_at < $5)
AND ($6::bigint[] IS NULL OR id = ANY($6::bigint[]))

-- name: dead_letter_list
SELECT row_to_json(d)::text FROM jr_jobs_done d WHERE {{dlq_where}} ORDER BY id LIMIT $1

-- name: dead_letter_replay
WITH x AS (DELETE FROM jr_jobs_done
            WHERE id IN (SELECT id FROM jr_jobs_done WHERE {{dlq_where}} ORDER BY id LIMIT $1)
           RETURNING *)
{{revive_rows}}

-- name: dead_letter_purge
DELETE FROM jr_jobs_done WHERE id IN (SELECT id FROM jr_jobs_done WHERE {{dlq_where}} LIMIT $1)

-- name: queue_pause
INSERT INTO jr_queue_pauses (queue) VALUES ($1) ON CONFLICT DO NOTHING

-- name: queue_resume
DELETE FROM jr_queue_pauses WHERE queue = $1

-- name: queue_paused
SELECT queue FROM jr_queue_pauses ORDER BY queue

-- name: rate_limit_set
INSERT INTO jr_rate_limits (key, rate, burst, tokens) VALUES ($1, $2, $3, $3)
ON CONFLICT (key) DO UPDATE SET rate = EXCLUDED.rate, burst = EXCLUDED.burst,
  tokens = least(jr_rate_limits.tokens, EXCLUDED.burst), updated_at = now(), pattern = NULL

-- A pattern ("tenant:*"): the buckets made from it follow (migration 15).
-- name: rate_limit_set_from_pattern
UPDATE jr_rate_limits SET rate = $2, burst = $3, tokens = least(tokens, $3) WHERE pattern = $1

-- name: rate_limit_remove
DELETE FROM jr_rate_limits WHERE key = $1

-- name: rate_limit_remove_from_pattern
DELETE FROM jr_rate_limits WHERE pattern = $1

-- name: rate_limit_list
SELECT coalesce(json_agg(json_build_object('key', key, 'rate', rate, 'burst', burst,
         'tokens', least(burst, tokens + rate * extract(epoch from now() - updated_at)),
         'pattern', pattern) ORDER BY key), '[]')::text
  FROM jr_rate_limits

-- name: rate_key_field_set
SELECT jr_rate_key_field_set($1, $2, $3)

-- name: rate_key_field_remove
SELECT jr_rate_key_field_rm($1)

-- name: rate_key_field_list
SELECT coalesce(json_agg(json_build_object('kind', kind, 'field', field, 'prefix', prefix)
                         ORDER BY kind), '[]')::text
  FROM jr_rate_key_fields

-- name: kinds_idle
SELECT NOT EXISTS (SELECT 1 FROM jr_jobs
                    WHERE kind = ANY($1::text[]) AND state IN ('available', 'running'))

-- name: worker_register
INSERT INTO jr_workers (id, host, pid, kinds, queues) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET kinds = EXCLUDED.kinds, queues = EXCLUDED.queues,
  heartbeat_at = now(), host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = now()

-- name: worker_heartbeat
UPDATE jr_workers SET heartbeat_at = now(), jobs_done = $2 WHERE id = $1

-- name: worker_unregister
DELETE FROM jr_workers WHERE id = $1

-- name: worker_serves_kind
SELECT EXISTS (SELECT 1 FROM jr_workers
                WHERE $1 = ANY(kinds) AND heartbeat_at > now() - make_interval(secs => $2))

-- name: kind_defaults_upsert
INSERT INTO jr_kinds (kind, plugin, default_queue, timeout_ms, max_attempts, retry_schedule,
                      finalizer)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (kind) DO UPDATE SET plugin = EXCLUDED.plugin,
  default_queue = EXCLUDED.default_queue, timeout_ms = EXCLUDED.timeout_ms,
  max_attempts = EXCLUDED.max_attempts, retry_schedule = EXCLUDED.retry_schedule,
  finalizer = EXCLUDED.finalizer, updated_at = now()
