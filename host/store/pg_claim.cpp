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
// Asynchronous commit: the claim statements set synchronous_commit off for their own
// transaction (sql/claim.sql). A claim's lease is counted from the statement's now(), but other
// sessions (the rescuer) see the claim only after its commit; a synchronous commit waits for
// the WAL flush first, and under heavy commit load that wait outgrew a short lease: the claim
// became visible already expired and was rescued while its job was starting. An asynchronous
// commit is visible as soon as it is written, not flushed. What it gives up is only the claim's
// durability across a database crash: a lost claim leaves the job available with its attempt
// not counted, exactly as before the claim. Claimed by another runner, the job runs again there
// and the first runner's completion is fenced off (it names another owner); claimed again by
// the same runner while its execution still runs, the engine keeps that execution and starts
// no second one (Engine::fetch_loop). At least once, as after any crash. The slow path's token
// spending commits asynchronously with its claims: a crash can lose some, letting a bucket run
// over its limit once.
//
// SQL: host/store/sql/claim.sql.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

#include "pg_store.hpp"
#include "util.hpp"

namespace jr {
namespace {

std::vector<int> int_array(const pqxx::field& f) {
  std::vector<int> out;
  if (f.is_null()) return out;
  std::string s = f.c_str();
  for (auto& item : split_list(std::string_view(s).substr(1, s.size() - 2))) {
    out.push_back(std::stoi(item));
  }
  return out;
}

// A numeric column (an epoch from extract()) as a double. libpqxx 6.4 converts through a
// stringstream: three of them per claimed job (created, started, run_at) were 1% of a drain's CPU
// (perf, 200,000 no-op jobs).
double epoch(const pqxx::field& f) {
  const char* s = f.c_str();
  const char* end = s + f.size();
  double v = 0;
  auto r = std::from_chars(s, end, v);
  if (r.ec != std::errc() || r.ptr != end) return f.as<double>();  // what from_chars cannot read
  return v;
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
  j.created_at = epoch(row[9]);
  j.started_at = epoch(row[10]);
  // Column 11 is `deferred`. The job's traceparent and run_at (OpenTelemetry traces).
  if (!row[12].is_null()) j.traceparent = row[12].c_str();
  if (!row[13].is_null()) j.run_at = epoch(row[13]);
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
  auto r = pg::exec(tx, sql::job_claim, kinds, s.patterns.empty() ? nullptr : pats.c_str(), limit,
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
        pg::exec(tx, sql::job_claim_locked, pg_int_array(deferred), p.worker_id, p.lease_seconds);
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
  pg::exec(tx, sql::job_rate_buckets, key_arr);
  struct Bucket {
    int allowance;
    double tokens;
    double rate;
  };
  std::map<std::string, Bucket> buckets;
  for (const auto& row : pg::exec(tx, sql::job_rate_lock, key_arr)) {
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
  auto cands = pg::exec(tx, sql::job_rate_claim, pg_text_array(want_keys), pg_int_array(want_n),
                        a[0], s.exact_queues.empty() ? nullptr : a[1].c_str(),
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
         pg::exec(tx, sql::job_claim_ids, pg_int_array(plain), p.worker_id, p.lease_seconds)) {
      out.push_back(to_job(row));
    }
  }
  if (!locked.empty()) {
    for (const auto& row :
         pg::exec(tx, sql::job_claim_locked, pg_int_array(locked), p.worker_id, p.lease_seconds)) {
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
    pg::exec(tx, sql::job_rate_spend, pg_text_array(spend_keys), pg_int_array(spend_n));
  }
  return out;
}

// Highest priority first, then FIFO: the order the engine starts them in.
void sort_claimed(std::vector<ClaimedJob>& v) {
  std::sort(v.begin(), v.end(), [](const ClaimedJob& a, const ClaimedJob& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
  });
}

std::vector<ClaimedJob> claim_fast(pqxx::nontransaction& tx, const JobClaimParams& p,
                                   bool& need_slow) {
  std::vector<ClaimedJob> out;
  need_slow = false;
  if (p.limit <= 0) return out;
  ClaimScope s = base_scope(p);
  auto a = claim_args(s);
  auto r = pg::exec(tx, sql::job_claim_fast, a[0], s.patterns.empty() ? nullptr : a[2].c_str(),
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
  for (const auto& row : pg::exec(tx, sql::job_rate_keys)) rate_keys.emplace_back(row[0].c_str());
  auto limits = pg::exec(tx, sql::job_rate_limits_lock);
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
      pg::exec(tx, sql::job_rate_limit_spend, l.key, static_cast<int>(got.size()));
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
  sort_claimed(out);
  return out;
}

}  // namespace

std::vector<ClaimedJob> PgStore::JobClaim(const JobClaimParams& p) {
  return guard([&] {
    ensure_prepared();
    // Fast path: one autocommit statement (no BEGIN, no rate-limit lock, one round trip).
    // When it reports rate limits or lock keys in play, the transaction path claims the rest
    // and stays in use for a few seconds, so a limited queue does not pay for both.
    auto now = std::chrono::steady_clock::now();
    std::vector<ClaimedJob> out;
    JobClaimParams rest = p;
    if (now >= slow_claims_until_) {
      bool need_slow = false;
      {
        pqxx::nontransaction tx(*conn_);
        out = claim_fast(tx, p, need_slow);
      }
      if (!need_slow) {
        sort_claimed(out);
        return out;
      }
      slow_claims_until_ = now + std::chrono::seconds(2);
      rest.limit -= static_cast<int>(out.size());
      if (rest.limit <= 0) {
        sort_claimed(out);
        return out;
      }
    }
    std::vector<ClaimedJob> more;
    try {
      pqxx::work tx(*conn_);
      // Asynchronous like the fast claim (pg_claim.cpp): its lease starts at the statement,
      // so its visibility must not wait for the WAL flush.
      pg::exec(tx, sql::tx_async_commit);
      more = claim(tx, rest);
      tx.commit();
    } catch (const std::exception& e) {
      // The fast half already committed its claims: hand those out (the engine runs them)
      // rather than drop them to expire and be rescued with an attempt used.
      if (out.empty()) throw;
      log::warn("claiming the rate-limited or lock-keyed part failed; running the rest",
                {{"error", e.what()}, {"claimed", out.size()}});
      sort_claimed(out);
      return out;
    }
    if (out.empty()) return more;
    for (auto& j : more) out.push_back(std::move(j));
    sort_claimed(out);
    return out;
  });
}

}  // namespace jr
