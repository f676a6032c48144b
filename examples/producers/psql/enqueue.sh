#!/bin/sh
# Enqueue jobrunner jobs with plain psql (Debian: postgresql-client).
#
# What it shows (docs/job-model.md, "Producers in other languages"):
#   1. a job enqueued in the application's own transaction, with the application's row: both
#      are committed together, or neither is;
#   2. a rolled-back transaction enqueues nothing;
#   3. many jobs in one statement (jr_enqueue_many);
#   4. a job's status and result (jr_job_status), optionally waiting until it has finished.
#
# The database URL comes from DATABASE_URL; connect as a role that is a member of
# jobrunner_producer (GRANT jobrunner_producer TO your_app_role) and may create the example's
# table "signups" in its own schema. Prints one JSON object with the ids, for the test suite
# (tests/host/producers_test.cpp) and for you.
#
# Usage: DATABASE_URL=postgresql://... sh enqueue.sh [--wait SECONDS] [--count N]
set -eu

wait_s=0
count=100
while [ $# -gt 0 ]; do
  case "$1" in
    --wait) wait_s=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    *) echo "enqueue.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
: "${DATABASE_URL:?set DATABASE_URL to the runner\'s database}"

# -X: no ~/.psqlrc; ON_ERROR_STOP: the first failing statement ends the script (and its open
# transaction) with exit code 3; -At: bare values. \gset stores a row's columns in variables,
# and :'name' quotes a variable as an SQL literal.
sql() { psql "$DATABASE_URL" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# Steps 1 to 3 print two lines: the first job's id, and the ids as JSON.
out=$(sql -v count="$count" <<'SQL'
SET client_min_messages = warning;  -- no NOTICE when the table exists
CREATE TABLE IF NOT EXISTS signups (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email text NOT NULL, source text NOT NULL, welcome_job bigint);

-- 1. The application's row and its job, in one transaction.
BEGIN;
INSERT INTO signups (email, source) VALUES ('ada@example.com', 'psql') RETURNING id AS signup_id
\gset
SELECT jr_enqueue('echo',
                  jsonb_build_object('signup_id', :signup_id, 'email', 'ada@example.com',
                                     'source', 'psql'),
                  '{"max_attempts": 5, "timeout_seconds": 30}') AS job_id
\gset
UPDATE signups SET welcome_job = :job_id WHERE id = :signup_id;
COMMIT;

-- 2. The same, abandoned: neither the row nor the job exists afterwards.
BEGIN;
INSERT INTO signups (email, source) VALUES ('rolled-back@example.com', 'psql') RETURNING id AS rb
\gset
SELECT jr_enqueue('echo', jsonb_build_object('signup_id', :rb, 'source', 'psql'),
                  '{"max_attempts": 5}') AS rolled_back_job_id
\gset
ROLLBACK;

-- 3. Many jobs, one statement: one id per payload, in the payloads' order.
SELECT coalesce(json_agg(id ORDER BY n), '[]') AS bulk_job_ids
  FROM jr_enqueue_many('echo',
                       (SELECT coalesce(jsonb_agg(jsonb_build_object('n', i, 'source', 'psql')
                                                  ORDER BY i), '[]')
                          FROM generate_series(0, :count - 1) i),
                       '{"priority": 10, "max_attempts": 3}') WITH ORDINALITY AS t(id, n)
\gset

SELECT :job_id;
SELECT json_build_object('source', 'psql', 'signup_id', :signup_id, 'job_id', :job_id,
                         'rolled_back_job_id', :rolled_back_job_id,
                         'bulk_job_ids', :'bulk_job_ids'::json);
SQL
)
job_id=$(echo "$out" | sed -n 1p)
ids=$(echo "$out" | sed -n 2p)

# 4. The status of the first job (NULL when unknown), waiting up to --wait seconds for it to
# finish.
deadline=$(( $(date +%s) + wait_s ))
while :; do
  state=$(echo "SELECT jr_job_status($job_id) ->> 'state'" | sql)
  case "$state" in completed|discarded|cancelled) break ;; esac
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.1
done
sql -v ids="$ids" -v job_id="$job_id" <<'SQL'
SELECT :'ids'::jsonb || jsonb_build_object('status', jr_job_status(:job_id));
SQL
