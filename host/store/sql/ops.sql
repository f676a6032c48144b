-- Operations (host/ops, `runner info`): queue depths and throughput, the runners' registry
-- and the dashboard's statistics, the webhook outbox.

-- {"queue": {"state": n, ...}, ...} from the CTE `c` of rows (queue, state, n).
-- fragment: nest_by_queue
SELECT coalesce(jsonb_object_agg(queue, states), '{}')::text
  FROM (SELECT queue, jsonb_object_agg(state, n) AS states FROM c GROUP BY queue) q

-- name: queue_depths
WITH c AS (SELECT queue, state, count(*) AS n FROM jr_jobs GROUP BY 1, 2)
{{nest_by_queue}}

-- name: queue_throughput
WITH c AS (SELECT queue, state, count(*) AS n FROM jr_jobs_done
            WHERE state IN ('completed', 'discarded', 'cancelled')
              AND finished_at > now() - make_interval(secs => $1)
            GROUP BY 1, 2)
{{nest_by_queue}}

-- SQL expression: the database sessions of the runner of jr_workers row `w`, counted in
-- pg_stat_activity by the application_name it gives them ("jobrunner PID@HOST", cut at 63
-- bytes: ops/ui_publish.hpp). `runner info` and the dashboard's runner list both use it.
-- fragment: runner_connections
(SELECT count(*) FROM pg_stat_activity a
  WHERE a.application_name = left('jobrunner ' || w.pid || '@' || w.host, 63))

-- name: worker_list
SELECT coalesce(json_agg(json_build_object('id', id, 'host', host, 'pid', pid,
         'kinds', kinds, 'queues', queues, 'started_at', started_at,
         'heartbeat_at', heartbeat_at,
         'heartbeat_age_seconds', extract(epoch from now() - heartbeat_at),
         'jobs_done', jobs_done, 'connections', {{runner_connections}})
         ORDER BY started_at, id), '[]')::text
  FROM jr_workers w WHERE heartbeat_at > now() - make_interval(secs => $1)

-- name: worker_details
UPDATE jr_workers SET details = $2::jsonb WHERE id = $1

-- Attempts finished per minute ($1 minute starts, $2 outcomes, $3 counts), added up.
-- name: stats_minute_add
INSERT INTO jr_stats_minute (minute, outcome, count)
SELECT to_timestamp(m), o, n FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS u(m, o, n)
ON CONFLICT (minute, outcome) DO UPDATE SET count = jr_stats_minute.count + EXCLUDED.count

-- name: stats_minute_prune
DELETE FROM jr_stats_minute WHERE minute < now() - interval '1 day'

-- name: worker_prune_dead
DELETE FROM jr_workers WHERE heartbeat_at < now() - make_interval(secs => $1)

-- name: webhook_url_set
INSERT INTO jr_webhooks (kind, url) VALUES ($1, $2)
ON CONFLICT (kind) DO UPDATE SET url = EXCLUDED.url, updated_at = now()
 WHERE jr_webhooks.url <> EXCLUDED.url

-- The webhooks of the kinds this runner serves ($1) that its config no longer names ($2).
-- name: webhook_urls_drop
DELETE FROM jr_webhooks WHERE kind = ANY($1::text[]) AND NOT kind = ANY($2::text[])

-- name: webhook_claim
WITH due AS (SELECT id FROM jr_webhook_deliveries
              WHERE state = 'pending' AND next_attempt_at <= now()
                AND (locked_until IS NULL OR locked_until < now())
              ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
UPDATE jr_webhook_deliveries d
   SET locked_by = $1, locked_until = now() + make_interval(secs => $3)
  FROM due WHERE d.id = due.id
RETURNING d.id, d.job_id, d.event, d.url, d.body, d.attempts

-- name: webhook_delivered
UPDATE jr_webhook_deliveries
   SET state = 'delivered', attempts = attempts + 1, last_status = $2, last_error = NULL,
       delivered_at = now(), locked_by = NULL, locked_until = NULL
 WHERE id = $1

-- $2 the HTTP status (NULL: no answer), $3 the error, $4 seconds to the next attempt, $5 the
-- attempts after which the delivery has failed.
-- name: webhook_failed
UPDATE jr_webhook_deliveries
   SET attempts = attempts + 1, last_status = $2, last_error = $3,
       state = CASE WHEN attempts + 1 >= $5 THEN 'failed' ELSE 'pending' END,
       next_attempt_at = now() + make_interval(secs => $4), locked_by = NULL, locked_until = NULL
 WHERE id = $1

-- name: webhook_for_job
SELECT coalesce(json_agg(json_build_object('id', id, 'event', event, 'url', url,
         'state', state, 'attempts', attempts, 'last_status', last_status,
         'last_error', last_error,
         'next_attempt_at', CASE WHEN state = 'pending' THEN next_attempt_at END,
         'created_at', created_at, 'delivered_at', delivered_at) ORDER BY id), '[]')::text
  FROM jr_webhook_deliveries WHERE job_id = $1
