-- The leader's maintenance (host/engine/maintenance/): due jobs promoted, expired leases
-- rescued, TTLs expired, history pruned, dependencies resolved, priorities aged, cron ticks
-- enqueued; and the leader lease itself. Each statement does one bounded batch ($1 or $4: the
-- batch size) and skips rows other sessions hold.

-- name: job_promote_due :prepared
WITH due AS (SELECT id FROM jr_jobs
              WHERE state IN ('scheduled', 'retryable') AND run_at <= now()
              ORDER BY run_at LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE jr_jobs j SET state = 'available' FROM due WHERE j.id = due.id

-- Jobs whose lease expired (their runner crashed, was killed or lost the database): retried
-- with backoff, or dead-lettered when that was the last attempt ($2: the default max attempts).
-- name: job_rescue_expired
WITH exp AS (
  SELECT j.id, j.attempt, j.lease_owner,
         coalesce(j.max_attempts, k.max_attempts, $2) AS max_att,
         coalesce(j.retry_schedule, k.retry_schedule) AS sched
    FROM jr_jobs j LEFT JOIN jr_kinds k ON k.kind = j.kind
   WHERE j.state = 'running' AND j.lease_expires_at < now()
   ORDER BY j.lease_expires_at LIMIT $1
     FOR UPDATE OF j SKIP LOCKED),
entry AS (
  SELECT id, attempt, sched, attempt >= max_att AS dead,
         jsonb_build_array(jsonb_build_object(
           'attempt', attempt, 'at', now(), 'kind', 'lease_lost',
           'message', 'lease expired: the runner stopped heartbeating (crashed, killed '
                      'or cut off from the database)',
           'worker_id', lease_owner,
           'host', (SELECT w.host FROM jr_workers w WHERE w.id = exp.lease_owner))) AS e
    FROM exp),
dead AS (DELETE FROM jr_jobs j USING entry WHERE j.id = entry.id AND entry.dead
         RETURNING j.*, entry.e),
ins AS (INSERT INTO jr_jobs_done ({{done_cols}})
        SELECT id, queue, kind, payload, 'discarded', priority, attempt, max_attempts,
               NULL, progress, errors || e, options, created_at, started_at, timeout_ms,
               retry_schedule, lock_key, lock_limit FROM dead
        RETURNING id),
upd AS (UPDATE jr_jobs j
           SET state = 'retryable', lease_owner = NULL, lease_expires_at = NULL,
               errors = j.errors || entry.e,
               run_at = now() + make_interval(secs =>
                 CASE WHEN coalesce(array_length(entry.sched, 1), 0) > 0
                      THEN entry.sched[least(entry.attempt, array_length(entry.sched, 1))]
                      ELSE least(power(2, entry.attempt - 1), 3600)
                           * (0.5 + random() * 0.5) END)
          FROM entry WHERE j.id = entry.id AND NOT entry.dead
        RETURNING j.id)
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM ins)

-- name: job_expire_ttl
WITH x AS (DELETE FROM jr_jobs WHERE id IN (
             SELECT id FROM jr_jobs WHERE expires_at < now() AND state <> 'running'
              LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING *)
INSERT INTO jr_jobs_done ({{done_cols}})
SELECT id, queue, kind, payload, 'cancelled', priority, attempt, max_attempts, NULL,
       progress, errors || jsonb_build_array(jsonb_build_object('attempt', attempt,
       'at', now(), 'kind', 'expired', 'message', 'ttl passed before the job started')),
       options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit FROM x

-- Finished jobs past their retention ($1 completed, $2 discarded, $3 cancelled, in seconds;
-- a job's own result_ttl or failure_ttl wins), unless a waiting job still depends on them.
-- name: job_prune
DELETE FROM jr_jobs_done WHERE id IN (
  SELECT id FROM jr_jobs_done
   WHERE (state = 'completed' AND finished_at < now() - make_interval(secs =>
            coalesce((options->>'result_ttl')::float8, $1)))
      OR (state = 'discarded' AND finished_at < now() - make_interval(secs =>
            coalesce((options->>'failure_ttl')::float8, $2)))
      OR (state = 'cancelled' AND finished_at < now() - make_interval(secs => $3))
   LIMIT $4)
  AND NOT EXISTS (SELECT 1 FROM jr_jobs w
                   WHERE w.state = 'waiting' AND w.depends_on @> ARRAY[jr_jobs_done.id])

-- The lock rows of period-unique keys (migration 14) only queue up enqueues of one key: one
-- not used for an hour and not held now can go (a later enqueue inserts it again).
-- name: unique_locks_prune
DELETE FROM jr_unique_locks WHERE key IN (
  SELECT key FROM jr_unique_locks WHERE locked_at < now() - interval '1 hour'
   LIMIT $1 FOR UPDATE SKIP LOCKED)

-- Batches (migration 17) whose callback ran longer ago than any finished member is kept by
-- default: their members are gone or going. A member retried after that finds no batch row
-- and is counted nowhere (its trigger does nothing).
-- name: batches_prune
DELETE FROM jr_batches WHERE id IN (
  SELECT id FROM jr_batches
   WHERE finished_at < now() - make_interval(secs => greatest($1::float8, $2::float8,
                                                                $3::float8))
   LIMIT $4 FOR UPDATE SKIP LOCKED)

-- A parent counts as done when completed; as dead when discarded or cancelled. A parent still
-- in jr_jobs is pending. Returns the children made available and the children cancelled.
-- name: job_resolve_dependencies
WITH w AS (
  SELECT j.id,
         bool_and(d.state = 'completed') FILTER (WHERE true) AS all_done,
         count(*) FILTER (WHERE d.state IN ('discarded', 'cancelled')) AS dead,
         min(p) FILTER (WHERE d.state IN ('discarded', 'cancelled')) AS dead_parent,
         count(*) FILTER (WHERE d.id IS NULL) AS pending
    FROM (SELECT id, depends_on FROM jr_jobs WHERE state = 'waiting'
           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) j
    CROSS JOIN LATERAL unnest(j.depends_on) p
    LEFT JOIN jr_jobs_done d ON d.id = p
   GROUP BY j.id),
promote AS (
  UPDATE jr_jobs j SET state = 'available', run_at = now()
    FROM w WHERE j.id = w.id AND w.pending = 0 AND w.dead = 0
  RETURNING j.id),
dead AS (
  DELETE FROM jr_jobs j USING w WHERE j.id = w.id AND w.dead > 0
  RETURNING j.*, w.dead_parent),
ins AS (
  INSERT INTO jr_jobs_done ({{done_cols}})
  SELECT id, queue, kind, payload, 'cancelled', priority, attempt, max_attempts, NULL, progress,
         errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(),
           'kind', 'dependency', 'message',
           'parent job ' || dead_parent || ' was dead-lettered or cancelled')),
         options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit
    FROM dead
  RETURNING id)
SELECT (SELECT count(*) FROM promote), (SELECT count(*) FROM ins)

-- Only jobs below the highest waiting priority can starve, so only they age ($1 seconds per
-- point), and never past it: a queue where everything has one priority costs nothing.
-- Everything goes through jr_jobs_queue_available_idx (queue, priority DESC, id): a loose index
-- scan finds the queues and each queue's top priority (its first index entry), and the
-- candidates are read per queue from the range below the top - no scan of the available jobs
-- (max(priority) over them used to cost ~0.5 ms per 1,000 queued jobs, every time).
-- name: job_age_priorities
WITH RECURSIVE qs AS (
  SELECT min(queue) AS queue FROM jr_jobs WHERE state = 'available'
  UNION ALL
  SELECT (SELECT min(j.queue) FROM jr_jobs j WHERE j.state = 'available' AND j.queue > qs.queue)
    FROM qs WHERE qs.queue IS NOT NULL),
top AS (
  SELECT max((SELECT j.priority FROM jr_jobs j WHERE j.state = 'available' AND j.queue = qs.queue
               ORDER BY j.priority DESC, j.id LIMIT 1)) AS p
    FROM qs WHERE qs.queue IS NOT NULL),
aged AS (
  SELECT c.id, least(t.p, coalesce(c.base_priority, c.priority) +
                          floor(extract(epoch from now() - c.run_at) / $1)::int) AS np
    FROM top t CROSS JOIN qs CROSS JOIN LATERAL (
      SELECT j.id, j.base_priority, j.priority, j.run_at FROM jr_jobs j
       WHERE j.state = 'available' AND j.queue = qs.queue AND j.priority < t.p
       ORDER BY j.priority DESC, j.id
       LIMIT $2 FOR UPDATE SKIP LOCKED) c
   WHERE qs.queue IS NOT NULL
   LIMIT $2)
UPDATE jr_jobs j SET priority = aged.np FROM aged
 WHERE j.id = aged.id AND aged.np > j.priority

-- name: leader_acquire
INSERT INTO jr_leaders (name, owner, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3::float8))
ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
 WHERE jr_leaders.owner = EXCLUDED.owner OR jr_leaders.expires_at < now()
RETURNING owner

-- name: leader_resign
DELETE FROM jr_leaders WHERE name = $1 AND owner = $2

-- Cron: entries declared by plugins or the config; a changed schedule or timezone recomputes
-- the next run.
-- name: cron_upsert
INSERT INTO jr_cron (name, schedule, timezone, kind, queue, payload, backfill, source)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
ON CONFLICT (name) DO UPDATE SET
  next_run_at = CASE WHEN jr_cron.schedule IS DISTINCT FROM EXCLUDED.schedule
                       OR jr_cron.timezone IS DISTINCT FROM EXCLUDED.timezone
                     THEN NULL ELSE jr_cron.next_run_at END,
  schedule = EXCLUDED.schedule, timezone = EXCLUDED.timezone, kind = EXCLUDED.kind,
  queue = EXCLUDED.queue, payload = EXCLUDED.payload, backfill = EXCLUDED.backfill,
  source = EXCLUDED.source, updated_at = now()

-- name: cron_list
SELECT coalesce(json_agg(json_build_object('name', name, 'schedule', schedule,
         'timezone', timezone, 'kind', kind, 'queue', queue, 'payload', payload,
         'backfill', backfill, 'source', source, 'next_run_at', next_run_at,
         'last_run_at', last_run_at) ORDER BY name), '[]')::text
  FROM jr_cron

-- Locked rows: a second leader (or a stale one) waits, then re-checks the due condition
-- against the advanced next_run_at and skips: each tick is enqueued once.
-- name: cron_due
SELECT name, schedule, timezone, kind, queue, payload::text, backfill, next_run_at IS NULL,
       to_char(next_run_at AT TIME ZONE timezone, 'YYYY-MM-DD HH24:MI:SS'),
       to_char(now() AT TIME ZONE timezone, 'YYYY-MM-DD HH24:MI:SS'),
       next_run_at < now() - interval '5 minutes'
  FROM jr_cron WHERE next_run_at IS NULL OR next_run_at <= now()
 ORDER BY name FOR UPDATE SKIP LOCKED

-- name: cron_tick_savepoint
SAVEPOINT cron_tick

-- name: cron_tick_release
RELEASE SAVEPOINT cron_tick

-- name: cron_tick_rollback
ROLLBACK TO SAVEPOINT cron_tick

-- One tick's job; its unique key ($4: entry, tick and timezone) makes a tick enqueue once.
-- name: cron_insert
INSERT INTO jr_jobs (queue, kind, payload, state, priority, base_priority, unique_key)
VALUES (coalesce($2, (SELECT default_queue FROM jr_kinds WHERE kind = $1), 'default'),
        $1, $3::jsonb, 'available', 0, 0, $4)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id

-- The dashboard shows the job each tick made (migration 11; the last 20 per entry).
-- name: cron_run_record
INSERT INTO jr_cron_runs (name, tick, job_id) VALUES ($1, $2, $3)

-- name: cron_runs_trim
DELETE FROM jr_cron_runs
 WHERE name = $1
   AND job_id < (SELECT min(job_id) FROM (SELECT job_id FROM jr_cron_runs WHERE name = $1
                                          ORDER BY job_id DESC LIMIT 20) k)

-- name: cron_advance
UPDATE jr_cron SET next_run_at = ($2::timestamp AT TIME ZONE timezone),
       last_run_at = CASE WHEN $3 THEN now() ELSE last_run_at END
 WHERE name = $1

-- The vacuum service: the hot table's dead row versions as the statistics last reported them
-- (every claim and completion leaves one), and its VACUUM.
-- name: jobs_dead_rows
SELECT coalesce((SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'jr_jobs'::regclass),
                0)::bigint

-- name: jobs_vacuum
VACUUM jr_jobs
