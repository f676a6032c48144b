-- Claiming: the one statement on the hot path (job_claim_fast), and the slower path's steps for
-- lock keys, rate limits and rate keys. How they fit together: host/store/pg_claim.cpp.

-- The claim commits asynchronously: `lim` (volatile, so evaluated on every run) sets
-- synchronous_commit off for the statement's own transaction (pg_claim.cpp says why).
-- Two prepared variants from one text: job_claim (FAST=false) runs inside the slow path's
-- transaction (rate limits locked, lock keys try-locked for the second step); job_claim_fast
-- (FAST=true) is the common case as one autocommit statement: it claims nothing when a rate
-- limit touches our kinds or any queue (checked in the same statement, so a limit added a moment
-- ago is seen), and does not claim lock-keyed jobs; either case shows up as rows with
-- deferred = true and the caller takes the slow path.
-- $1 kinds, $2 queue patterns, $3 limit, $4 worker id, $5 lease seconds, $6 queues excluded,
-- $7 kinds excluded, $8 exact queues (NULL: every queue with available jobs).
-- fragment: claim
WITH RECURSIVE lim AS (
  SELECT set_config('synchronous_commit', 'off', true) AS async,
         @FAST@ AND EXISTS (SELECT 1 FROM jr_rate_limits r
                             WHERE r.key LIKE 'queue:%'
                                OR (r.key LIKE 'kind:%' AND substr(r.key, 6) = ANY($1::text[])))
         AS limited),
keyed AS (
  SELECT @FAST@ AND EXISTS (SELECT 1 FROM jr_jobs k
                             WHERE k.state = 'available' AND k.options ? 'rate_key'
                               AND k.kind = ANY($1::text[])) AS waiting),
qs AS (
  SELECT min(queue) AS queue FROM jr_jobs WHERE state = 'available' AND $8::text[] IS NULL
  UNION ALL
  SELECT (SELECT min(j.queue) FROM jr_jobs j WHERE j.state = 'available' AND j.queue > qs.queue)
    FROM qs WHERE qs.queue IS NOT NULL),
eligible AS (
  SELECT queue FROM qs WHERE queue IS NOT NULL
     AND ($2::text[] IS NULL OR queue LIKE ANY($2::text[]))
  UNION ALL
  SELECT unnest($8::text[])),
open_q AS (
  SELECT DISTINCT e.queue FROM eligible e
   WHERE NOT EXISTS (SELECT 1 FROM jr_queue_pauses p WHERE p.queue = e.queue)
     AND ($6::text[] IS NULL OR e.queue <> ALL($6::text[]))
     AND NOT (SELECT limited FROM lim)),
nq AS (SELECT greatest(count(*), 1) AS n FROM open_q),
cand AS (
  SELECT c.* FROM open_q q CROSS JOIN LATERAL (
    SELECT j.id, j.queue, j.priority, j.lock_key FROM jr_jobs j
     WHERE j.state = 'available' AND j.queue = q.queue AND j.kind = ANY($1::text[])
       AND ($7::text[] IS NULL OR j.kind <> ALL($7::text[]))
       AND (j.expires_at IS NULL OR j.expires_at > now()) AND NOT (j.options ? 'rate_key')
     ORDER BY j.priority DESC, j.id
     LIMIT least($3::int, ceil($3::int * 2.0 / (SELECT n FROM nq))::int)
       FOR UPDATE SKIP LOCKED) c),
pick AS (
  SELECT id, lock_key FROM (
    SELECT cand.*, row_number() OVER (PARTITION BY queue ORDER BY priority DESC, id) AS rn
      FROM cand) r
   ORDER BY rn, priority DESC, id LIMIT $3::int),
upd AS (
  UPDATE jr_jobs j
     SET state = 'running', attempt = j.attempt + 1, lease_owner = $4,
         lease_expires_at = now() + make_interval(secs => $5::float8), started_at = now()
    FROM pick WHERE j.id = pick.id AND pick.lock_key IS NULL
  RETURNING j.id, j.kind, j.queue, j.payload::text AS payload, j.priority, j.attempt,
            j.max_attempts, j.timeout_ms, j.retry_schedule, extract(epoch from j.created_at) AS c,
            extract(epoch from j.started_at) AS s, j.options->>'traceparent' AS tp,
            extract(epoch from j.run_at) AS r)
SELECT upd.id, upd.kind, upd.queue, upd.payload, upd.priority, upd.attempt, upd.max_attempts,
       upd.timeout_ms, upd.retry_schedule, upd.c, upd.s, false AS deferred, upd.tp, upd.r FROM upd
UNION ALL
SELECT id, NULL::text, NULL::text, NULL::text, NULL::int, NULL::int, NULL::int, NULL::bigint,
       NULL::int[], NULL::numeric, NULL::numeric, true, NULL::text, NULL::numeric
  FROM pick WHERE lock_key IS NOT NULL AND (@FAST@ OR pg_try_advisory_xact_lock(27251, hashtext(lock_key)))
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, true, NULL, NULL
  FROM lim WHERE limited
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, true, NULL, NULL
  FROM keyed WHERE waiting

-- name: job_claim :prepared
{{claim FAST=false}}

-- name: job_claim_fast :prepared
{{claim FAST=true}}

-- Second step for lock-keyed candidates ($1) whose key lock this transaction holds: each key
-- runs at most its lock_limit jobs at once.
-- name: job_claim_locked :prepared
WITH c AS (
  SELECT j.id, j.lock_key, coalesce(j.lock_limit, 1) AS lim,
         row_number() OVER (PARTITION BY j.lock_key ORDER BY j.priority DESC, j.id) AS rn
    FROM jr_jobs j WHERE j.id = ANY($1::bigint[]) AND j.state = 'available'),
ok AS (
  SELECT c.id FROM c
   WHERE c.rn <= c.lim - (SELECT count(*) FROM jr_jobs r
                           WHERE r.lock_key = c.lock_key AND r.state = 'running'))
UPDATE jr_jobs j
   SET state = 'running', attempt = j.attempt + 1, lease_owner = $2,
       lease_expires_at = now() + make_interval(secs => $3::float8), started_at = now()
  FROM ok WHERE j.id = ok.id
RETURNING j.id, j.kind, j.queue, j.payload::text, j.priority, j.attempt, j.max_attempts,
          j.timeout_ms, j.retry_schedule, extract(epoch from j.created_at),
          extract(epoch from j.started_at), false, j.options->>'traceparent',
          extract(epoch from j.run_at)

-- Rate keys, step 1: the distinct keys with available jobs (at most 1,000 per claim).
-- name: job_rate_keys :prepared
WITH RECURSIVE k AS (
  SELECT min(options->>'rate_key') AS key FROM jr_jobs
   WHERE state = 'available' AND options ? 'rate_key'
  UNION ALL
  SELECT (SELECT min(j.options->>'rate_key') FROM jr_jobs j
           WHERE j.state = 'available' AND j.options ? 'rate_key' AND j.options->>'rate_key' > k.key)
    FROM k WHERE k.key IS NOT NULL)
SELECT key FROM k WHERE key IS NOT NULL LIMIT 1000

-- Step 2: a bucket for every key that has none but matches a "prefix*" pattern row (the
-- longest), full; then every bucket of these keys, locked in key order, with its tokens now.
-- name: job_rate_buckets :prepared
INSERT INTO jr_rate_limits (key, rate, burst, tokens, pattern)
SELECT k, b.rate, b.burst, b.burst, b.key
  FROM (SELECT DISTINCT unnest($1::text[]) AS k ORDER BY 1) keys
  CROSS JOIN LATERAL (
    SELECT r.key, r.rate, r.burst FROM jr_rate_limits r
     WHERE r.pattern IS NULL AND right(r.key, 1) = '*'
       AND left(keys.k, length(r.key) - 1) = left(r.key, -1)
     ORDER BY length(r.key) DESC LIMIT 1) b
 WHERE NOT EXISTS (SELECT 1 FROM jr_rate_limits e WHERE e.key = keys.k)
ORDER BY k
ON CONFLICT (key) DO NOTHING

-- name: job_rate_lock :prepared
SELECT key, least(burst, tokens + rate * extract(epoch from now() - updated_at)), rate
  FROM jr_rate_limits WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE

-- Step 3: each key's share ($1 keys, $2 counts), candidates locked; $3 kinds, $4 exact queues,
-- $5 queue patterns (NULL: any). Lock-keyed candidates need their key lock (see above).
-- name: job_rate_claim :prepared
WITH q AS (SELECT unnest($1::text[]) AS key, unnest($2::int[]) AS n)
SELECT c.id, c.lock_key, q.key FROM q CROSS JOIN LATERAL (
  SELECT j.id, j.lock_key FROM jr_jobs j
   WHERE j.state = 'available' AND j.options ? 'rate_key' AND j.options->>'rate_key' = q.key
     AND j.kind = ANY($3::text[])
     AND ($4::text[] IS NULL OR j.queue = ANY($4::text[]))
     AND ($5::text[] IS NULL OR j.queue LIKE ANY($5::text[]))
     AND NOT EXISTS (SELECT 1 FROM jr_queue_pauses p WHERE p.queue = j.queue)
     AND (j.expires_at IS NULL OR j.expires_at > now())
   ORDER BY j.priority DESC, j.id LIMIT q.n FOR UPDATE SKIP LOCKED) c
 WHERE c.lock_key IS NULL OR pg_try_advisory_xact_lock(27251, hashtext(c.lock_key))

-- Step 4: the candidates without a lock key ($1), claimed.
-- name: job_claim_ids :prepared
UPDATE jr_jobs j
   SET state = 'running', attempt = j.attempt + 1, lease_owner = $2,
       lease_expires_at = now() + make_interval(secs => $3::float8), started_at = now()
 WHERE j.id = ANY($1::bigint[]) AND j.state = 'available'
RETURNING j.id, j.kind, j.queue, j.payload::text, j.priority, j.attempt, j.max_attempts,
          j.timeout_ms, j.retry_schedule, extract(epoch from j.created_at),
          extract(epoch from j.started_at), false, j.options->>'traceparent',
          extract(epoch from j.run_at)

-- Step 5: the tokens used, per key ($1 keys, $2 counts).
-- name: job_rate_spend :prepared
UPDATE jr_rate_limits r
   SET tokens = least(r.burst, r.tokens + r.rate * extract(epoch from now() - r.updated_at)) - u.n,
       updated_at = now()
  FROM (SELECT unnest($1::text[]) AS k, unnest($2::int[]) AS n) u
 WHERE r.key = u.k

-- The queue and kind buckets, locked for the slow claim's transaction, with their tokens now.
-- name: job_rate_limits_lock
SELECT key, least(burst, tokens + rate * extract(epoch from now() - updated_at)), rate
  FROM jr_rate_limits WHERE key LIKE 'queue:%' OR key LIKE 'kind:%' ORDER BY key FOR UPDATE

-- name: job_rate_limit_spend
UPDATE jr_rate_limits
   SET tokens = least(burst, tokens + rate * extract(epoch from now() - updated_at)) - $2,
       updated_at = now()
 WHERE key = $1
