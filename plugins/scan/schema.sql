-- scan's table, `scan_jobs` (see README.md). Run by ScanStore::ensure_schema()
-- (src/scan_store.cpp) before the plugin's first use of the table, in one transaction under an
-- advisory lock; everything here must be safe to run again.
CREATE TABLE IF NOT EXISTS scan_jobs (
  id            text PRIMARY KEY,
  url           text NOT NULL,
  user_id       text,
  status        text NOT NULL DEFAULT 'QUEUED',
  step          text,
  progress      integer NOT NULL DEFAULT 0,
  teaser        jsonb,
  result        jsonb,
  error_state   text,
  error_message text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  state         jsonb,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  job_id        bigint
);
-- Tables created before job_id existed get it (checked first: ALTER TABLE would take an
-- exclusive lock on every start even when there is nothing to do).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name = 'scan_jobs'
                    AND column_name = 'job_id') THEN
    ALTER TABLE scan_jobs ADD COLUMN job_id bigint;
  END IF;
END $$;
CREATE INDEX IF NOT EXISTS scan_jobs_created_at_idx ON scan_jobs (created_at);
CREATE INDEX IF NOT EXISTS scan_jobs_expires_at_idx ON scan_jobs (expires_at);
