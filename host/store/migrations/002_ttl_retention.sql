-- migration 2: job ttl and retention
--
-- v2: job retention and expiry. ttl: a job not started by expires_at is cancelled (kind
-- "expired"). result_ttl / failure_ttl live in options and are applied by the pruner.

ALTER TABLE jr_jobs ADD COLUMN expires_at timestamptz;
CREATE INDEX jr_jobs_expires_idx ON jr_jobs (expires_at)
  WHERE expires_at IS NOT NULL AND state <> 'running';
CREATE INDEX jr_jobs_done_kind_state_idx ON jr_jobs_done (state, kind, finished_at);
-- A retried dead letter keeps its per-job timeout and retry schedule.
ALTER TABLE jr_jobs_done ADD COLUMN timeout_ms bigint, ADD COLUMN retry_schedule integer[];
