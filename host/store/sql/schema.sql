-- The schema's own bookkeeping: which migrations ran (host/store/migrations, applied by
-- PgStore::SchemaMigrate under a database-wide advisory lock).

-- name: schema_migrations_exist
SELECT to_regclass('jr_migrations')

-- name: schema_migrations_known
SELECT count(*) FROM jr_migrations WHERE version = ANY($1::int[])

-- name: schema_migrate_lock
SELECT pg_advisory_xact_lock($1::bigint)

-- name: schema_migrations_create
CREATE TABLE IF NOT EXISTS jr_migrations (
  version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())

-- name: schema_migrations_applied
SELECT version FROM jr_migrations

-- name: schema_migration_record
INSERT INTO jr_migrations (version, name) VALUES ($1, $2)

-- name: schema_version
SELECT CASE WHEN to_regclass('jr_migrations') IS NULL THEN 0
            ELSE (SELECT coalesce(max(version), 0) FROM jr_migrations) END

-- Session and transaction settings, and the wake-up of idle claimers.

-- name: session_async_commit
SET synchronous_commit TO off

-- No JIT compilation on the runner's own sessions (PgStore::connect). Its statements are short
-- and touch a few hundred rows, but the claim's cost estimate multiplies the queues it may walk
-- by the rows per queue: once the small tables have statistics (a database-wide VACUUM ANALYZE,
-- vacuumdb --analyze-in-stages after an upgrade) the estimate crossed jit_above_cost, and every
-- claim of 500 jobs spent ~22 ms compiling and ~8 ms running (docs/performance.md, "JIT").
-- name: session_no_jit
SET jit TO off

-- name: session_setting
SELECT current_setting($1, true)

-- name: tx_async_commit
SET LOCAL synchronous_commit TO off

-- name: wake_claimers
SELECT pg_notify('jr_jobs', '')

-- name: ping
SELECT 1
