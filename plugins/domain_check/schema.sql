-- domain_check's table, `domains` (see README.md, "Results"). Run by DomainStore::ensure_schema()
-- (src/domain_store.cpp) before the plugin's first read or write, in one transaction under an
-- advisory lock; everything here must be safe to run again (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS domains (
  id                  bigserial PRIMARY KEY,
  name                text NOT NULL UNIQUE,
  status              text NOT NULL
                      CHECK (status IN ('available', 'registered', 'invalid', 'unknown')),
  method              text,
  checked_at          timestamptz NOT NULL,
  details             jsonb NOT NULL DEFAULT '{}'::jsonb,
  recheck_enqueued_at timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS domains_checked_at_idx ON domains (checked_at);
