-- dataset_parse's tables (see README.md, "Tables"). Run by create_schema() (src/db.cpp) when the
-- plugin starts, or before the first job if the database was unreachable then, in one
-- transaction under an advisory lock; everything here must be safe to run again (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS datasets (
  id            text PRIMARY KEY,
  country_code  text NOT NULL,         -- ISO 3166-1 alpha-2, any case: 'US', 'fr'
  storage_path  text NOT NULL,         -- relative to storage_root, e.g. 'us/yob2023.txt'
  status        text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
  error_message text,                  -- why the last attempt failed (NULL once completed)
  metrics       jsonb,                 -- see README.md
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
-- No foreign key to datasets on purpose (README.md, "Tables": COPY is 4 times slower with it).
CREATE TABLE IF NOT EXISTS names (
  dataset_id text    NOT NULL,         -- datasets.id
  name       text    NOT NULL,
  sex        text    NOT NULL CHECK (sex IN ('F', 'M')),
  count      integer NOT NULL CHECK (count > 0),
  year       integer NOT NULL,         -- year of birth
  rank       integer                   -- 1 = most given, per (year, sex); NULL if the format has none
);
CREATE INDEX IF NOT EXISTS names_dataset_id_idx ON names (dataset_id);
