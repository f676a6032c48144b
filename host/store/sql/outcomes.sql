-- Outcomes and leases: what a runner writes about the jobs it holds. Every statement is fenced
-- by the lease: it touches a job only while the job is running under this runner ($1 or $3)
-- at this attempt, so a late outcome after the lease moved on changes nothing.

-- Appended to a statement whose CTE `d` holds jobs that just completed (and $2 the ids asked
-- for): their waiting children whose every parent has now completed become available in the
-- same statement, so a child starts within milliseconds of its last parent (the leader's
-- dependency pass, every poll interval, remains for the rest: a dead parent, or two parents
-- completed at the same moment in two transactions, neither seeing the other's).
-- fragment: promote_children
, kids AS (SELECT c.id FROM jr_jobs c
            WHERE c.state = 'waiting' AND c.depends_on && $2::bigint[]
              AND NOT EXISTS (SELECT 1 FROM unnest(c.depends_on) p(id)
                               WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.id = p.id)
                                 AND NOT EXISTS (SELECT 1 FROM jr_jobs_done x
                                                  WHERE x.id = p.id AND x.state = 'completed'))
              FOR UPDATE OF c SKIP LOCKED),
promote AS (UPDATE jr_jobs c SET state = 'available', run_at = now() FROM kids
             WHERE c.id = kids.id RETURNING c.id)

-- Completion of a batch, one pkey lookup per job and no join: $2 holds the ids; owner and state
-- are written so that no index can serve them (`|| ''`) and stay filters after the lookup,
-- because the planner, estimating one running row for a fresh worker id, would otherwise read
-- every running row of the owner through jr_jobs_owner_idx (the cost grew with the backlog,
-- docs/performance.md). Per-job values come from JSON objects keyed by id: $3 the attempt
-- (fencing), $4 the result (NULL: no job returned one). One row per completed job, and a row
-- without an id when someone must be woken (a child promoted, a lock key's slot freed).
-- name: job_complete_many :prepared
WITH d AS (
  DELETE FROM jr_jobs j
   WHERE j.id = ANY($2::bigint[]) AND j.state || '' = 'running'
     AND j.lease_owner || '' = $1 AND j.attempt = ($3::jsonb ->> j.id::text)::int
  RETURNING j.id, j.queue, j.kind, j.payload, j.priority, j.attempt, j.max_attempts,
            nullif($4::jsonb -> j.id::text, 'null'::jsonb) AS result, j.progress,
            j.errors, j.options, j.created_at, j.started_at, j.timeout_ms,
            j.retry_schedule, j.lock_key, j.lock_limit)
, ins AS (
INSERT INTO jr_jobs_done ({{done_cols}}, worker_id, worker_host)
SELECT id, queue, kind, payload, 'completed', priority, attempt, max_attempts, result,
       progress, errors, options, created_at, started_at, timeout_ms, retry_schedule, lock_key,
       lock_limit, $1, (SELECT w.host FROM jr_workers w WHERE w.id = $1) FROM d
RETURNING id, lock_key)
{{promote_children}}
SELECT id, false FROM ins
UNION ALL
SELECT NULL, true
 WHERE EXISTS (SELECT 1 FROM promote) OR EXISTS (SELECT 1 FROM ins WHERE lock_key IS NOT NULL)

-- The entry of a failed attempt names its runner ($3, the lease owner) and that runner's host
-- (migration 9: `runner status` lists who ran each attempt); $5 the error kind, $6 the message.
-- fragment: error_entry
jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'kind', $5::text,
  'message', $6::text, 'worker_id', $3::text,
  'host', (SELECT w.host FROM jr_workers w WHERE w.id = $3::text)))

-- name: job_retry :prepared
UPDATE jr_jobs SET state = 'retryable', run_at = now() + make_interval(secs => $4::float8),
       lease_owner = NULL, lease_expires_at = NULL, errors = errors || {{error_entry}}
 WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_owner = $3
RETURNING id, lock_key IS NOT NULL

-- name: job_snooze :prepared
UPDATE jr_jobs SET state = 'scheduled', run_at = now() + make_interval(secs => $4::float8),
       attempt = attempt - 1, lease_owner = NULL, lease_expires_at = NULL
 WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_owner = $3
RETURNING id, lock_key IS NOT NULL

-- name: job_release :prepared
UPDATE jr_jobs SET state = 'available', attempt = attempt - 1, lease_owner = NULL,
       lease_expires_at = NULL
 WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_owner = $3
RETURNING id, lock_key IS NOT NULL

-- Discarded or cancelled ($4) by the plugin: to jr_jobs_done with the error.
-- name: job_finish_done :prepared
WITH d AS (DELETE FROM jr_jobs
            WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_owner = $3
        RETURNING *)
INSERT INTO jr_jobs_done ({{done_cols}})
SELECT id, queue, kind, payload, $4, priority, attempt, max_attempts, NULL, progress,
       errors || {{error_entry}}, options, created_at, started_at,
       timeout_ms, retry_schedule, lock_key, lock_limit FROM d
RETURNING id, lock_key IS NOT NULL

-- By primary key; owner and state are filters (see job_complete_many). Rows another
-- transaction has locked are skipped, not waited for: a completion of some held jobs waiting
-- for its WAL flush (or a cancel request) must not hold up the renewal of all the others; a
-- skipped row is renewed on the next round.
-- name: job_heartbeat_held :prepared
WITH h AS (
  SELECT id FROM jr_jobs
   WHERE id = ANY($3::bigint[]) AND lease_owner || '' = $1 AND state || '' = 'running'
     FOR NO KEY UPDATE SKIP LOCKED)
UPDATE jr_jobs j SET lease_expires_at = now() + make_interval(secs => $2::float8)
  FROM h WHERE j.id = h.id
RETURNING j.id, j.cancel_requested

-- name: job_heartbeat :prepared
UPDATE jr_jobs SET lease_expires_at = now() + make_interval(secs => $2::float8)
 WHERE lease_owner = $1 AND state = 'running'
RETURNING id, cancel_requested

-- Jobs claimed for this runner ($1) since it started that it does not hold ($2): claims whose
-- answer was lost. Back to available, the attempt not counted.
-- name: job_release_orphaned
UPDATE jr_jobs SET state = 'available', attempt = attempt - 1, lease_owner = NULL,
       lease_expires_at = NULL
 WHERE lease_owner = $1 AND state = 'running' AND NOT (id = ANY($2::bigint[]))
   AND started_at >= (SELECT w.started_at FROM jr_workers w WHERE w.id = $1)
RETURNING id

-- name: job_cancel_requested
SELECT id FROM jr_jobs WHERE lease_owner = $1 AND state = 'running' AND cancel_requested
