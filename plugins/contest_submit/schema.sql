-- contest_submit's tables (see README.md, "Schema"). Run by contest::ensure_schema()
-- (src/store.cpp) when the plugin starts and by the contest-submit CLI, in one transaction under
-- an advisory lock; everything here must be safe to run again (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS contests (
  id bigint PRIMARY KEY,
  starts_at timestamptz NOT NULL,
  ends_at timestamptz NOT NULL,
  scoring text NOT NULL DEFAULT 'icpc' CHECK (scoring IN ('icpc', 'points')),
  penalty_minutes integer NOT NULL DEFAULT 20 CHECK (penalty_minutes >= 0),
  CHECK (ends_at > starts_at)
);
CREATE TABLE IF NOT EXISTS problems (
  contest_id bigint NOT NULL REFERENCES contests (id) ON DELETE CASCADE,
  id text NOT NULL,
  checker text NOT NULL DEFAULT 'exact'
    CHECK (checker IN ('exact', 'case_insensitive', 'numeric', 'regex')),
  tolerance double precision NOT NULL DEFAULT 0 CHECK (tolerance >= 0),
  expected text NOT NULL,
  points integer NOT NULL DEFAULT 1 CHECK (points >= 0),
  PRIMARY KEY (contest_id, id)
);
CREATE TABLE IF NOT EXISTS submissions (
  id text PRIMARY KEY,
  contest_id bigint NOT NULL,
  team_id text NOT NULL,
  problem_id text NOT NULL,
  answer text NOT NULL,
  submitted_at timestamptz NOT NULL,
  verdict text NOT NULL CHECK (verdict IN
    ('accepted', 'wrong_answer', 'contest_not_running', 'unknown_problem', 'invalid')),
  score integer NOT NULL DEFAULT 0,
  detail text NOT NULL DEFAULT '',
  judged_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS submissions_contest_team_idx ON submissions (contest_id, team_id);
-- The per-contest queues judged from so far (seed 004's "queue registry"): a runner that judges
-- the first submission of a queue inserts its row and logs the discovery, once for all runners.
CREATE TABLE IF NOT EXISTS contest_queues (
  queue text PRIMARY KEY,
  contest_id bigint NOT NULL,
  first_job_id bigint NOT NULL,
  first_submission_id text NOT NULL,
  discovered_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS standings (
  contest_id bigint NOT NULL,
  team_id text NOT NULL,
  solved integer NOT NULL DEFAULT 0,
  penalty bigint NOT NULL DEFAULT 0,
  points bigint NOT NULL DEFAULT 0,
  last_accepted_at timestamptz,
  PRIMARY KEY (contest_id, team_id)
);
