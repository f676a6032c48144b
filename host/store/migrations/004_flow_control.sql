-- migration 4: flow control: unique, lock keys, dependencies, pauses, rate limits, cron
--
-- v4: flow control. See store.hpp for the semantics of each column.

ALTER TABLE jr_jobs DROP CONSTRAINT jr_jobs_state_check;
ALTER TABLE jr_jobs ADD CONSTRAINT jr_jobs_state_check
  CHECK (state IN ('waiting', 'scheduled', 'available', 'running', 'retryable'));
ALTER TABLE jr_jobs
  ADD COLUMN base_priority integer,        -- the priority asked for; priority ages upwards
  ADD COLUMN unique_key    text,           -- at most one live job per key
  ADD COLUMN lock_key      text,           -- at most lock_limit running jobs per key
  ADD COLUMN lock_limit    integer CHECK (lock_limit > 0),
  ADD COLUMN depends_on    bigint[];       -- parents that must complete first (state waiting)
CREATE UNIQUE INDEX jr_jobs_unique_idx ON jr_jobs (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX jr_jobs_lock_running_idx ON jr_jobs (lock_key)
  WHERE lock_key IS NOT NULL AND state = 'running';
CREATE INDEX jr_jobs_waiting_idx ON jr_jobs USING gin (depends_on) WHERE state = 'waiting';
-- Fair claiming walks the distinct queues with available jobs through this index.
CREATE INDEX jr_jobs_queue_available_idx ON jr_jobs (queue, priority DESC, id)
  WHERE state = 'available';
DROP INDEX jr_jobs_available_idx;
ALTER TABLE jr_jobs_done ADD COLUMN lock_key text, ADD COLUMN lock_limit integer;

-- Paused queues: no runner claims from them until resumed.
CREATE TABLE jr_queue_pauses (
  queue      text PRIMARY KEY,
  paused_at  timestamptz NOT NULL DEFAULT now()
);

-- Token buckets enforced at claim time: key is "queue:NAME" or "kind:NAME".
CREATE TABLE jr_rate_limits (
  key        text PRIMARY KEY CHECK (key ~ '^(queue|kind):.+'),
  rate       float8 NOT NULL CHECK (rate > 0),  -- tokens per second
  burst      float8 NOT NULL CHECK (burst >= 1),
  tokens     float8 NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Periodic jobs, from the config and plugin manifests; the leader enqueues each tick once.
CREATE TABLE jr_cron (
  name        text PRIMARY KEY,
  schedule    text NOT NULL,
  timezone    text NOT NULL DEFAULT 'UTC',
  kind        text NOT NULL,
  queue       text,
  payload     jsonb NOT NULL DEFAULT '{}',
  backfill    boolean NOT NULL DEFAULT false,
  source      text NOT NULL,
  next_run_at timestamptz,
  last_run_at timestamptz,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
