-- migration 11: web dashboard: per-queue indexes, runner details, throughput per minute, dependency edges, cron runs
--
-- Migration 11: what the web dashboard (host/ops/ui_*.cpp) reads, designed so that the hot path
-- pays as little as possible. A claim (available -> running) and a completion (running ->
-- jr_jobs_done as completed) insert into none of the indexes below: a partial index only takes
-- an entry when the new row version satisfies its predicate.

-- Counts and lists of waiting, scheduled and retryable jobs per queue (Overview, Jobs), in
-- (queue, run_at, id) order. Only a job entering one of these states pays for an entry (an
-- enqueue with a delay or parents, a retry, a snooze); available and running jobs never do.
CREATE INDEX jr_jobs_ui_pending_idx ON jr_jobs (state, queue, run_at, id)
  WHERE state IN ('waiting', 'scheduled', 'retryable');

-- Dead letters and cancelled jobs per queue (Overview, Dead letters): a completed job, the
-- common case, never enters it.
CREATE INDEX jr_jobs_done_ui_failed_idx ON jr_jobs_done (state, queue, finished_at)
  WHERE state <> 'completed';

-- Counts above the dashboard's exact-count cap are the planner's estimates; these make them
-- follow the real (queue, state) mix instead of assuming the two independent. ANALYZE only.
CREATE STATISTICS jr_jobs_ui_queue_state (mcv) ON queue, state FROM jr_jobs;
CREATE STATISTICS jr_jobs_done_ui_queue_state (mcv) ON queue, state FROM jr_jobs_done;

-- The planner's row estimate for one (queue, state) of jr_jobs or jr_jobs_done.
CREATE FUNCTION jr_ui_estimate(p_done boolean, p_queue text, p_state text)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE plan json;
BEGIN
  EXECUTE format('EXPLAIN (FORMAT JSON) SELECT 1 FROM %I WHERE queue = %L AND state = %L',
                 CASE WHEN p_done THEN 'jr_jobs_done' ELSE 'jr_jobs' END, p_queue, p_state)
    INTO plan;
  RETURN round((plan->0->'Plan'->>'Plan Rows')::numeric)::bigint;
END $$;

-- What each runner publishes for the dashboard at heartbeat time (host/ops/ui_publish.cpp): its
-- plugins with their sandbox state, refused plugins and their reasons, jobs running now.
ALTER TABLE jr_workers ADD COLUMN details jsonb;

-- Attempts finished per minute and outcome, counted by the runners as attempts end (the
-- Overview's throughput), so the chart never counts rows of jr_jobs_done. Kept one day.
CREATE TABLE jr_stats_minute (
  minute  timestamptz NOT NULL,
  outcome text        NOT NULL,
  count   bigint      NOT NULL,
  PRIMARY KEY (minute, outcome)
);

-- Dependency edges, kept after jobs finish (jr_jobs_done has no depends_on), written by a row
-- trigger only for jobs inserted with parents (the WHEN clause costs other inserts one test),
-- and forgotten when the child is deleted from jr_jobs_done (pruned or purged) for good.
CREATE TABLE jr_job_deps (
  child  bigint NOT NULL,
  parent bigint NOT NULL,
  PRIMARY KEY (child, parent)
);
CREATE INDEX jr_job_deps_parent_idx ON jr_job_deps (parent);
INSERT INTO jr_job_deps (child, parent)
  SELECT id, unnest(depends_on) FROM jr_jobs WHERE depends_on IS NOT NULL ON CONFLICT DO NOTHING;

CREATE FUNCTION jr_job_deps_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO jr_job_deps (child, parent) SELECT NEW.id, p FROM unnest(NEW.depends_on) p
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER jr_jobs_ui_deps AFTER INSERT ON jr_jobs
  FOR EACH ROW WHEN (NEW.depends_on IS NOT NULL) EXECUTE FUNCTION jr_job_deps_record();

CREATE FUNCTION jr_job_deps_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A replayed dead letter moved back to jr_jobs in the same statement keeps its edges.
  DELETE FROM jr_job_deps d USING jr_ui_done_old o
   WHERE d.child = o.id AND NOT EXISTS (SELECT 1 FROM jr_jobs j WHERE j.id = o.id);
  RETURN NULL;
END $$;
CREATE TRIGGER jr_jobs_done_ui_deps AFTER DELETE ON jr_jobs_done
  REFERENCING OLD TABLE AS jr_ui_done_old
  FOR EACH STATEMENT EXECUTE FUNCTION jr_job_deps_forget();

-- The job each cron tick made (host/store/pg_flow.cpp records it; the last 20 per entry are kept).
CREATE TABLE jr_cron_runs (
  name        text        NOT NULL,
  tick        text        NOT NULL,  -- the entry's local time, "YYYY-MM-DD HH:MM:SS"
  job_id      bigint      NOT NULL,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, job_id)
);
