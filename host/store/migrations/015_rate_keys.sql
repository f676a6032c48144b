-- migration 15: per-tenant rate limits: buckets for rate keys and key patterns
--
-- v15. Rate keys (docs/job-model.md, host/store/pg_claim.cpp). A bucket's key is "queue:NAME",
-- "kind:NAME", a rate key, or a pattern "prefix*" (a default for every rate key starting with
-- prefix; the runners copy it into a bucket of the key's own, pattern = the pattern's key, when
-- they first claim such a job).

ALTER TABLE jr_rate_limits DROP CONSTRAINT jr_rate_limits_key_check;
ALTER TABLE jr_rate_limits ADD CONSTRAINT jr_rate_limits_key_check
  CHECK (key <> '' AND key !~ '[\x01-\x1f\x7f]');
ALTER TABLE jr_rate_limits ADD COLUMN pattern text;
CREATE INDEX jr_rate_limits_pattern_idx ON jr_rate_limits (pattern) WHERE pattern IS NOT NULL;
CREATE INDEX jr_jobs_rate_key_available_idx ON jr_jobs ((options->>'rate_key'), priority DESC, id)
  WHERE state = 'available' AND options ? 'rate_key';
