// Claiming: the one statement on the hot path, plus the slower paths it defers to when lock
// keys or rate limits are in play.
//
// Fairness: the claim walks the distinct queues that have available jobs (a loose index scan
// over jr_jobs_queue_available_idx) and takes jobs round-robin across them, so a flood in one
// queue cannot starve the others. Within a queue: higher priority first, then FIFO.
//
// Lock keys: a job with a lock key is not claimed by the main statement. Its key is locked
// with a transaction-level advisory lock and a second statement, whose snapshot is taken after
// the lock is held, checks how many jobs with that key are running. Any other claimer of the
// key holds the same lock until it commits, so the count cannot be stale.
//
// Rate limits: token buckets in jr_rate_limits rows, locked for the claim's transaction.
// Limited queues/kinds are excluded from the main claim and claimed separately, at most as
// many as there are whole tokens.
//
// Rate keys (per-tenant limits, migration 15, docs/job-model.md): a job with options.rate_key
// is never claimed by the main statement (the fast one only reports that such jobs wait). The
// slow path walks the distinct keys with available jobs (a loose index scan), finds each key's
// bucket (its own row, else one made from the longest "prefix*" pattern row; none: no limit),
// locks those buckets in key order, shares the claim's room among the keys round-robin from a
// random start (each at most its whole tokens), and claims every key's share in one statement,
// so one tenant's backlog neither starves another nor uses its budget.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

#include "pg_internal.hpp"
#include "util.hpp"

namespace jr::pg {
namespace {

// The claim commits asynchronously: `lim` (volatile, so evaluated on every run) sets
// synchronous_commit off for the statement's own transaction. A claim's lease is counted from
// the statement's now(), but other sessions (the rescuer) see the claim only after its commit;
// a synchronous commit waits for the WAL flush first, and under heavy commit load that wait
// outgrew a short lease: the claim became visible already expired and was rescued while its
// job was starting. An asynchronous commit is visible as soon as it is written, not flushed.
// What it gives up is only the claim's durability across a database crash: a lost claim leaves
// the job available with its attempt not counted, exactly as before the claim. Claimed by
// another runner, the job runs again there and the first runner's completion is fenced off (it
// names another owner); claimed again by the same runner while its execution still runs, the
// engine keeps that execution and starts no second one (Engine::fetch_loop). At least once, as
// after any crash. The slow path's token spending commits asynchronously with its claims: a
// crash can lose some, letting a bucket run over its limit once.
//
// Two prepared variants from one text: "job_claim" runs inside the slow path's
// transaction (rate limits locked, lock keys try-locked for the second step), "job_claim_fast"
// is the common case as one autocommit statement: it claims nothing when a rate limit touches
// our kinds or any queue (checked in the same statement, so a limit added a moment ago is
// seen), and does not claim lock-keyed jobs; either case shows up as rows with deferred = true
// and the caller takes the slow path.
const char* kClaimSql = R"SQL(
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
)SQL";

// Rate keys, step 1: the distinct keys with available jobs (at most 1,000 per claim).
const char* kRateKeysSql = R"SQL(
WITH RECURSIVE k AS (
  SELECT min(options->>'rate_key') AS key FROM jr_jobs
   WHERE state = 'available' AND options ? 'rate_key'
  UNION ALL
  SELECT (SELECT min(j.options->>'rate_key') FROM jr_jobs j
           WHERE j.state = 'available' AND j.options ? 'rate_key' AND j.options->>'rate_key' > k.key)
    FROM k WHERE k.key IS NOT NULL)
SELECT key FROM k WHERE key IS NOT NULL LIMIT 1000
)SQL";

// Step 2: a bucket for every key that has none but matches a "prefix*" pattern row (the
// longest), full; then every bucket of these keys, locked in key order, with its tokens now.
const char* kRateBucketsSql = R"SQL(
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
)SQL";
const char* kRateLockSql = R"SQL(
SELECT key, least(burst, tokens + rate * extract(epoch from now() - updated_at)), rate
  FROM jr_rate_limits WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE
)SQL";

// Step 3: each key's share ($1 keys, $2 counts), candidates locked; $3 kinds, $4 exact queues,
// $5 queue patterns (NULL: any). Lock-keyed candidates need their key lock (see above).
const char* kRateClaimSql = R"SQL(
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
)SQL";

const char* kClaimIdsSql = R"SQL(
UPDATE jr_jobs j
   SET state = 'running', attempt = j.attempt + 1, lease_owner = $2,
       lease_expires_at = now() + make_interval(secs => $3::float8), started_at = now()
 WHERE j.id = ANY($1::bigint[]) AND j.state = 'available'
RETURNING j.id, j.kind, j.queue, j.payload::text, j.priority, j.attempt, j.max_attempts,
          j.timeout_ms, j.retry_schedule, extract(epoch from j.created_at),
          extract(epoch from j.started_at), false, j.options->>'traceparent',
          extract(epoch from j.run_at)
)SQL";

const char* kRateSpendSql = R"SQL(
UPDATE jr_rate_limits r
   SET tokens = least(r.burst, r.tokens + r.rate * extract(epoch from now() - r.updated_at)) - u.n,
       updated_at = now()
  FROM (SELECT unnest($1::text[]) AS k, unnest($2::int[]) AS n) u
 WHERE r.key = u.k
)SQL";

std::string claim_sql(bool fast) {
  std::string s = kClaimSql;
  for (size_t at; (at = s.find("@FAST@")) != std::string::npos;) {
    s.replace(at, 6, fast ? "true" : "false");
  }
  return s;
}

// Second step for lock-keyed candidates whose key lock this transaction holds.
const char* kClaimLockedSql = R"SQL(
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
)SQL";

std::vector<int> int_array(const pqxx::field& f) {
  std::vector<int> out;
  if (f.is_null()) return out;
  std::string s = f.c_str();
  for (auto& item : split_list(std::string_view(s).substr(1, s.size() - 2))) {
    out.push_back(std::stoi(item));
  }
  return out;
}

ClaimedJob to_job(const pqxx::row& row) {
  ClaimedJob j;
  j.id = row[0].as<int64_t>();
  j.kind = row[1].c_str();
  j.queue = row[2].c_str();
  j.payload = row[3].c_str();
  j.priority = row[4].as<int>();
  j.attempt = row[5].as<int>();
  if (!row[6].is_null()) j.max_attempts = row[6].as<int>();
  if (!row[7].is_null()) j.timeout_ms = row[7].as<int64_t>();
  j.retry_schedule = int_array(row[8]);
  j.created_at = row[9].as<double>();
  j.started_at = row[10].as<double>();
  // Column 11 is `deferred`. The job's traceparent and run_at (OpenTelemetry traces).
  if (!row[12].is_null()) j.traceparent = row[12].c_str();
  if (!row[13].is_null()) j.run_at = row[13].as<double>();
  return j;
}

bool has_wildcard(const std::vector<std::string>& queues) {
  for (const auto& q : queues) {
    if (q.find('*') != std::string::npos) return true;
  }
  return false;
}

// "contest:submissions:*" -> LIKE pattern "contest:submissions:%" (LIKE's own % and _ escaped).
std::string like_pattern(const std::string& glob) {
  std::string out;
  for (char c : glob) {
    if (c == '%' || c == '_' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '*') {
      out += '%';
    } else {
      out += c;
    }
  }
  return out;
}

struct ClaimScope {
  std::vector<std::string> kinds;
  std::vector<std::string> exact_queues;  // used when non-empty
  std::vector<std::string> patterns;      // LIKE patterns when non-empty
  std::vector<std::string> exclude_queues;
  std::vector<std::string> exclude_kinds;
};

std::vector<std::string> claim_args(const ClaimScope& s) {
  return {pg_text_array(s.kinds), pg_text_array(s.exact_queues), pg_text_array(s.patterns),
          pg_text_array(s.exclude_queues), pg_text_array(s.exclude_kinds)};
}

ClaimScope base_scope(const JobClaimParams& p) {
  ClaimScope base;
  base.kinds = p.kinds;
  if (has_wildcard(p.queues)) {
    for (const auto& q : p.queues) base.patterns.push_back(like_pattern(q));
  } else {
    base.exact_queues = p.queues;
  }
  return base;
}

std::vector<ClaimedJob> claim_scope(pqxx::work& tx, const JobClaimParams& p, const ClaimScope& s,
                                    int limit) {
  std::vector<ClaimedJob> out;
  if (limit <= 0) return out;
  auto arr = [](const std::vector<std::string>& v) -> std::string { return pg_text_array(v); };
  std::string kinds = arr(s.kinds), exact = arr(s.exact_queues), pats = arr(s.patterns),
              exq = arr(s.exclude_queues), exk = arr(s.exclude_kinds);
  auto r = exec_stmt(tx, "job_claim", kinds, s.patterns.empty() ? nullptr : pats.c_str(), limit,
                     p.worker_id, p.lease_seconds, s.exclude_queues.empty() ? nullptr : exq.c_str(),
                     s.exclude_kinds.empty() ? nullptr : exk.c_str(),
                     s.exact_queues.empty() ? nullptr : exact.c_str());
  std::vector<int64_t> deferred;
  for (const auto& row : r) {
    if (row[11].as<bool>()) {
      deferred.push_back(row[0].as<int64_t>());
    } else {
      out.push_back(to_job(row));
    }
  }
  if (!deferred.empty()) {
    auto r2 =
        exec_stmt(tx, "job_claim_locked", pg_int_array(deferred), p.worker_id, p.lease_seconds);
    for (const auto& row : r2) out.push_back(to_job(row));
  }
  return out;
}

// Rate-keyed jobs (the slow path's last step): at most `room`, each key within its bucket.
// Sets retry_after (when a key used all its tokens) to when its next token is due, if sooner.
// `keys`: the keys with available jobs (job_rate_keys), read before any bucket was locked.
std::vector<ClaimedJob> claim_rate_keyed(pqxx::work& tx, const JobClaimParams& p,
                                         const ClaimScope& s, const std::vector<std::string>& keys,
                                         int room, double& retry_after) {
  std::vector<ClaimedJob> out;
  if (room <= 0 || keys.empty()) return out;
  std::string key_arr = pg_text_array(keys);
  exec_stmt(tx, "job_rate_buckets", key_arr);
  struct Bucket {
    int allowance;
    double tokens;
    double rate;
  };
  std::map<std::string, Bucket> buckets;
  for (const auto& row : exec_stmt(tx, "job_rate_lock", key_arr)) {
    double tokens = row[1].as<double>();
    buckets[row[0].c_str()] = {static_cast<int>(std::floor(tokens)), tokens, row[2].as<double>()};
  }
  // Round-robin from a random start: one job per key per turn, within each key's tokens.
  std::vector<int> share(keys.size(), 0);
  size_t start = static_cast<size_t>(std::rand()) % keys.size();
  for (bool more = true; room > 0 && more;) {
    more = false;
    for (size_t i = 0; i < keys.size() && room > 0; ++i) {
      size_t k = (start + i) % keys.size();
      auto b = buckets.find(keys[k]);
      if (b != buckets.end() && share[k] >= b->second.allowance) continue;
      ++share[k];
      --room;
      more = true;
    }
  }
  std::vector<std::string> want_keys;
  std::vector<int64_t> want_n;
  for (size_t k = 0; k < keys.size(); ++k) {
    if (share[k] > 0) {
      want_keys.push_back(keys[k]);
      want_n.push_back(share[k]);
    }
  }
  if (want_keys.empty()) {
    for (const auto& [key, b] : buckets) {
      double wait = std::max(0.002, (1.0 - (b.tokens - std::floor(b.tokens))) / b.rate);
      retry_after = retry_after == 0 ? wait : std::min(retry_after, wait);
    }
    return out;
  }
  auto a = claim_args(s);
  auto cands = exec_stmt(tx, "job_rate_claim", pg_text_array(want_keys), pg_int_array(want_n), a[0],
                         s.exact_queues.empty() ? nullptr : a[1].c_str(),
                         s.patterns.empty() ? nullptr : a[2].c_str());
  std::vector<int64_t> plain, locked;
  std::map<int64_t, std::string> key_of;
  for (const auto& row : cands) {
    int64_t id = row[0].as<int64_t>();
    (row[1].is_null() ? plain : locked).push_back(id);
    key_of[id] = row[2].c_str();
  }
  if (!plain.empty()) {
    for (const auto& row :
         exec_stmt(tx, "job_claim_ids", pg_int_array(plain), p.worker_id, p.lease_seconds)) {
      out.push_back(to_job(row));
    }
  }
  if (!locked.empty()) {
    for (const auto& row :
         exec_stmt(tx, "job_claim_locked", pg_int_array(locked), p.worker_id, p.lease_seconds)) {
      out.push_back(to_job(row));
    }
  }
  std::map<std::string, int> used;
  for (const auto& j : out) ++used[key_of[j.id]];
  std::vector<std::string> spend_keys;
  std::vector<int64_t> spend_n;
  for (const auto& [key, n] : used) {
    auto b = buckets.find(key);
    if (b == buckets.end()) continue;
    spend_keys.push_back(key);
    spend_n.push_back(n);
    if (n >= b->second.allowance) {
      double left = b->second.tokens - n;
      double wait = std::max(0.002, (1.0 - (left - std::floor(left))) / b->second.rate);
      retry_after = retry_after == 0 ? wait : std::min(retry_after, wait);
    }
  }
  if (!spend_keys.empty()) {
    exec_stmt(tx, "job_rate_spend", pg_text_array(spend_keys), pg_int_array(spend_n));
  }
  return out;
}

}  // namespace

void prepare_claim(pqxx::connection_base& c) {
  define(c, "job_rate_keys", kRateKeysSql);
  define(c, "job_rate_buckets", kRateBucketsSql);
  define(c, "job_rate_lock", kRateLockSql);
  define(c, "job_rate_claim", kRateClaimSql);
  define(c, "job_claim_ids", kClaimIdsSql);
  define(c, "job_rate_spend", kRateSpendSql);
  define(c, "job_claim", claim_sql(false));
  define(c, "job_claim_fast", claim_sql(true));
  define(c, "job_claim_locked", kClaimLockedSql);
}

std::vector<ClaimedJob> claim_fast(pqxx::nontransaction& tx, const JobClaimParams& p,
                                   bool& need_slow) {
  std::vector<ClaimedJob> out;
  need_slow = false;
  if (p.limit <= 0) return out;
  ClaimScope s = base_scope(p);
  auto a = claim_args(s);
  auto r = exec_stmt(tx, "job_claim_fast", a[0], s.patterns.empty() ? nullptr : a[2].c_str(),
                     p.limit, p.worker_id, p.lease_seconds, nullptr, nullptr,
                     s.exact_queues.empty() ? nullptr : a[1].c_str());
  out.reserve(r.size());
  for (const auto& row : r) {
    if (row[11].as<bool>()) {
      need_slow = true;
    } else {
      out.push_back(to_job(row));
    }
  }
  return out;
}

std::vector<ClaimedJob> claim(pqxx::work& tx, const JobClaimParams& p) {
  ClaimScope base = base_scope(p);
  // Rate limits that touch this runner's queues or kinds.
  std::vector<ClaimedJob> out;
  // The rate keys with available jobs, listed before the queue and kind buckets are locked, so
  // the section that other runners wait for is no longer when there are none (the usual case).
  std::vector<std::string> rate_keys;
  for (const auto& row : exec_stmt(tx, "job_rate_keys")) rate_keys.emplace_back(row[0].c_str());
  auto limits = tx.exec_params(
      "SELECT key, least(burst, tokens + rate * extract(epoch from now() - updated_at)), rate "
      "FROM jr_rate_limits WHERE key LIKE 'queue:%' OR key LIKE 'kind:%' ORDER BY key FOR UPDATE");
  double keyed_retry = 0;
  if (limits.empty()) {
    out = claim_scope(tx, p, base, p.limit);
  } else {
    ClaimScope unlimited = base;
    struct Limited {
      std::string key;
      ClaimScope scope;
      int allowance;
      double rate;
      double tokens;
    };
    std::vector<Limited> limited;
    for (const auto& row : limits) {
      std::string key = row[0].c_str();
      std::string name = key.substr(key.find(':') + 1);
      double tokens = row[1].as<double>();
      Limited l{key, base, static_cast<int>(std::floor(tokens)), row[2].as<double>(), tokens};
      if (key.rfind("queue:", 0) == 0) {
        unlimited.exclude_queues.push_back(name);
        l.scope.exact_queues = {name};
        l.scope.patterns.clear();
      } else {
        if (std::find(p.kinds.begin(), p.kinds.end(), name) == p.kinds.end()) continue;
        unlimited.exclude_kinds.push_back(name);
        l.scope.kinds = {name};
      }
      limited.push_back(std::move(l));
    }
    out = claim_scope(tx, p, unlimited, p.limit);
    double retry_after = 0;
    for (auto& l : limited) {
      int room = p.limit - static_cast<int>(out.size());
      int want = std::min(room, l.allowance);
      auto got = want > 0 ? claim_scope(tx, p, l.scope, want) : std::vector<ClaimedJob>{};
      tx.exec_params(
          "UPDATE jr_rate_limits SET tokens = least(burst, tokens + rate * extract(epoch from "
          "now() - updated_at)) - $2, updated_at = now() WHERE key = $1",
          l.key, static_cast<int>(got.size()));
      if (static_cast<int>(got.size()) >= l.allowance && room > static_cast<int>(got.size())) {
        // Come back exactly when the next whole token is due (a late poll would lose tokens
        // that a small burst cannot store).
        double left = l.tokens - static_cast<double>(got.size());
        double wait = std::max(0.002, (1.0 - (left - std::floor(left))) / l.rate);
        retry_after = retry_after == 0 ? wait : std::min(retry_after, wait);
      }
      for (auto& j : got) out.push_back(std::move(j));
    }
    if (p.throttled_retry_seconds != nullptr) *p.throttled_retry_seconds = retry_after;
  }
  for (auto& j : claim_rate_keyed(tx, p, base, rate_keys, p.limit - static_cast<int>(out.size()),
                                  keyed_retry)) {
    out.push_back(std::move(j));
  }
  if (keyed_retry > 0 && p.throttled_retry_seconds != nullptr) {
    double& r = *p.throttled_retry_seconds;
    r = r == 0 ? keyed_retry : std::min(r, keyed_retry);
  }
  std::sort(out.begin(), out.end(), [](const ClaimedJob& a, const ClaimedJob& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
  });
  return out;
}

}  // namespace jr::pg
