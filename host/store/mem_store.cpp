// The in-memory Store (mem_store.hpp). One mutex per database: every method is one critical
// section, the way each PostgreSQL method is one transaction, so a method is atomic and
// isolated from the others whatever the threads.
#include "mem_store.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "util.hpp"

namespace jr {
namespace {

using nlohmann::json;

constexpr const char* kScheme = "memory://";

StoreError unsupported(const std::string& what) {
  return StoreError("the in-memory store does not support " + what +
                        " (use PostgreSQL: see host/store/mem_store.hpp)",
                    false);
}

// PostgreSQL's text for a timestamptz in row_to_json: "2026-12-06T16:30:00.123456+00:00".
json iso(std::optional<double> t) {
  if (!t) return nullptr;
  return utc_timestamp(*t);
}

// "YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|+HH:MM|-HH:MM]" (what the CLI and the API pass on).
std::optional<double> parse_iso(const std::string& s) {
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  double t = static_cast<double>(timegm(&tm));
  size_t i = static_cast<size_t>(consumed);
  if (i < s.size() && s[i] == '.') {
    double scale = 0.1;
    for (++i; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
      t += (s[i] - '0') * scale;
      scale /= 10;
    }
  }
  if (i == s.size() || s.substr(i) == "Z" || s.substr(i) == "z") return t;
  int hh = 0, mm = 0;
  if ((s[i] == '+' || s[i] == '-') && std::sscanf(s.c_str() + i + 1, "%2d:%2d", &hh, &mm) >= 1) {
    double off = hh * 3600.0 + mm * 60.0;
    return s[i] == '+' ? t - off : t + off;
  }
  return std::nullopt;
}

bool glob_match(const std::string& pattern, const std::string& s) {
  // '*' matches any run of characters; everything else itself.
  size_t p = 0, i = 0, star = std::string::npos, mark = 0;
  while (i < s.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = i;
    } else if (p < pattern.size() && pattern[p] == s[i]) {
      ++p, ++i;
    } else if (star != std::string::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool done_state(const std::string& s) {
  return s == "completed" || s == "discarded" || s == "cancelled";
}

struct Row {
  int64_t id = 0;
  std::string queue, kind;
  json payload;
  std::string state;
  int priority = 0, base_priority = 0;
  double run_at = 0;
  int attempt = 0;
  std::optional<int> max_attempts;
  std::optional<int64_t> timeout_ms;
  std::optional<std::vector<int>> retry_schedule;
  std::optional<double> expires_at;
  json errors = json::array();
  json options = json::object();
  json progress;
  json result;
  double created_at = 0;
  std::optional<double> started_at, finished_at, lease_expires_at;
  std::optional<std::string> lease_owner, worker_id, unique_key, lock_key;
  std::optional<int> lock_limit;
  std::vector<int64_t> depends_on;
  bool cancel_requested = false;
};

struct Worker {
  std::vector<std::string> kinds, queues;
  double started_at = 0, heartbeat_at = 0;
  int64_t jobs_done = 0;
};

struct Db {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t notify_seq = 0;  // new-job notifications (pg_notify('jr_jobs'))
  std::shared_ptr<const Clock> clock;
  int64_t next_id = 1;
  std::map<int64_t, Row> jobs;  // live and finished (jr_jobs and jr_jobs_done)
  std::map<std::string, KindDefaults> kinds;
  std::set<std::string> paused;
  std::map<std::string, std::pair<std::string, double>> leaders;  // name -> owner, expires
  std::map<std::string, Worker> workers;
  std::mt19937_64 rng{std::random_device{}()};

  double now() const { return clock ? clock->unix_seconds() : unix_seconds(); }
  void notify() {
    ++notify_seq;
    cv.notify_all();
  }
};

std::mutex g_registry_mu;
std::map<std::string, std::shared_ptr<Db>>& registry() {
  static std::map<std::string, std::shared_ptr<Db>> r;
  return r;
}

std::shared_ptr<Db> database(const std::string& url) {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  auto& db = registry()[url.substr(std::char_traits<char>::length(kScheme))];
  if (!db) db = std::make_shared<Db>();
  return db;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

class MemStore final : public Store {
 public:
  explicit MemStore(std::shared_ptr<Db> db) : db_(std::move(db)) {}

  int SchemaMigrate() override { return 0; }
  int SchemaVersion() override { return 0; }

  JobInsertResult JobInsertEx(const JobInsertParams& p) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    return insert(p);
  }

  std::vector<int64_t> JobInsertMany(const std::vector<JobInsertParams>& jobs) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<int64_t> ids;
    all_or_nothing(ids, [&] {
      for (const auto& j : jobs) ids.push_back(insert(j).id);
    });
    return ids;
  }

  std::vector<int64_t> JobInsertBulk(const JobInsertParams& base,
                                     const std::vector<std::string>& payloads) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<int64_t> ids;
    JobInsertParams p = base;
    all_or_nothing(ids, [&] {
      for (const auto& payload : payloads) {
        p.payload = payload;
        ids.push_back(insert(p).id);
      }
    });
    return ids;
  }

  std::vector<ClaimedJob> JobClaim(const JobClaimParams& p) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    std::set<std::string> kinds(p.kinds.begin(), p.kinds.end());
    // Running jobs per lock key (a key's limit counts every runner's jobs).
    std::map<std::string, int> running_keys;
    for (const auto& [id, r] : db_->jobs) {
      if (r.state == "running" && r.lock_key) ++running_keys[*r.lock_key];
    }
    // Per queue, candidates by priority then age; then round-robin across queues by rank.
    std::map<std::string, std::vector<Row*>> per_queue;
    for (auto& entry : db_->jobs) {
      Row& r = entry.second;  // not a structured binding: the lambda below captures it
      if (r.state != "available" || !kinds.count(r.kind) || db_->paused.count(r.queue)) continue;
      if (r.expires_at && *r.expires_at <= now) continue;
      if (!p.queues.empty() && std::none_of(p.queues.begin(), p.queues.end(),
                                            [&](auto& q) { return glob_match(q, r.queue); })) {
        continue;
      }
      per_queue[r.queue].push_back(&r);
    }
    struct Pick {
      size_t rank;
      Row* row;
    };
    std::vector<Pick> picks;
    for (auto& [q, rows] : per_queue) {
      std::sort(rows.begin(), rows.end(), [](Row* a, Row* b) {
        return a->priority != b->priority ? a->priority > b->priority : a->id < b->id;
      });
      for (size_t i = 0; i < rows.size(); ++i) picks.push_back({i, rows[i]});
    }
    std::sort(picks.begin(), picks.end(), [](const Pick& a, const Pick& b) {
      if (a.rank != b.rank) return a.rank < b.rank;
      if (a.row->priority != b.row->priority) return a.row->priority > b.row->priority;
      return a.row->id < b.row->id;
    });
    std::vector<ClaimedJob> out;
    for (const auto& pick : picks) {
      if (static_cast<int>(out.size()) >= p.limit) break;
      Row& r = *pick.row;
      if (r.lock_key) {
        int& n = running_keys[*r.lock_key];
        if (n >= r.lock_limit.value_or(1)) continue;
        ++n;
      }
      r.state = "running";
      ++r.attempt;
      r.lease_owner = p.worker_id;
      r.lease_expires_at = now + p.lease_seconds;
      r.started_at = now;
      r.cancel_requested = false;
      ClaimedJob c;
      c.id = r.id;
      c.kind = r.kind;
      c.queue = r.queue;
      c.payload = r.payload.dump();
      c.priority = r.priority;
      c.attempt = r.attempt;
      c.max_attempts = r.max_attempts;
      c.timeout_ms = r.timeout_ms;
      if (r.retry_schedule) c.retry_schedule = *r.retry_schedule;
      c.created_at = r.created_at;
      c.started_at = now;
      c.traceparent = r.options.value("traceparent", "");
      c.run_at = r.run_at;
      out.push_back(std::move(c));
    }
    std::sort(out.begin(), out.end(), [](const ClaimedJob& a, const ClaimedJob& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
    });
    return out;
  }

  JobFinishResult JobFinishMany(const std::string& worker_id,
                                const std::vector<JobFinish>& jobs) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    JobFinishResult res;
    bool wake = false;
    for (const auto& j : jobs) {
      auto it = db_->jobs.find(j.id);
      // Fencing: only the attempt this runner holds may be finished.
      if (it == db_->jobs.end() || it->second.state != "running" ||
          it->second.attempt != j.attempt || it->second.lease_owner != worker_id) {
        res.rejected.push_back(j.id);
        continue;
      }
      Row& r = it->second;
      if (r.lock_key) wake = true;
      switch (j.outcome) {
        case Outcome::completed: {
          std::string_view text = j.result;
          if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
          r.result = !text.empty() && json::accept(text) ? json::parse(text) : json();
          r.worker_id = worker_id;
          finish(r, "completed", now);
          if (promote_children(r.id, now)) wake = true;
          if (auto w = db_->workers.find(worker_id); w != db_->workers.end()) ++w->second.jobs_done;
          break;
        }
        case Outcome::retry:
          r.errors.push_back(entry(r.attempt, now, j.error_kind, j.error, worker_id));
          park(r, "retryable", now + j.delay_seconds);
          break;
        case Outcome::snooze:
          --r.attempt;
          park(r, "scheduled", now + j.delay_seconds);
          break;
        case Outcome::release:
          --r.attempt;
          park(r, "available", r.run_at);
          wake = true;
          break;
        case Outcome::discard:
        case Outcome::cancelled:
          r.errors.push_back(entry(r.attempt, now, j.error_kind, j.error, worker_id));
          r.worker_id = worker_id;
          finish(r, j.outcome == Outcome::discard ? "discarded" : "cancelled", now);
          break;
      }
    }
    if (wake) db_->notify();
    return res;
  }

  std::vector<int64_t> JobHeartbeat(const std::string& worker_id, double lease_seconds) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<int64_t> cancel;
    for (auto& [id, r] : db_->jobs) renew(r, worker_id, lease_seconds, cancel, nullptr);
    return cancel;
  }

  std::vector<int64_t> JobHeartbeatHeld(const std::string& worker_id, double lease_seconds,
                                        const std::vector<int64_t>& ids, size_t* renewed) override {
    if (renewed) *renewed = 0;
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<int64_t> cancel;
    for (int64_t id : ids) {
      if (auto it = db_->jobs.find(id); it != db_->jobs.end()) {
        renew(it->second, worker_id, lease_seconds, cancel, renewed);
      }
    }
    return cancel;
  }

  void SessionAsyncCommit() override {}

  std::vector<int64_t> JobReleaseOrphanedClaims(const std::string& worker_id,
                                                const std::vector<int64_t>& held) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<int64_t> out;
    auto w = db_->workers.find(worker_id);
    if (w == db_->workers.end()) return out;
    std::set<int64_t> keep(held.begin(), held.end());
    for (auto& [id, r] : db_->jobs) {
      if (r.state == "running" && r.lease_owner == worker_id && !keep.count(id) &&
          r.started_at.value_or(0) >= w->second.started_at) {
        --r.attempt;
        park(r, "available", r.run_at);
        out.push_back(id);
      }
    }
    if (!out.empty()) db_->notify();
    return out;
  }

  int JobPromoteDue(int limit) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    std::vector<Row*> due;
    for (auto& [id, r] : db_->jobs) {
      if ((r.state == "scheduled" || r.state == "retryable") && r.run_at <= now) due.push_back(&r);
    }
    std::sort(due.begin(), due.end(), [](Row* a, Row* b) { return a->run_at < b->run_at; });
    if (static_cast<int>(due.size()) > limit) due.resize(static_cast<size_t>(std::max(limit, 0)));
    for (Row* r : due) r->state = "available";
    if (!due.empty()) db_->notify();
    return static_cast<int>(due.size());
  }

  std::optional<JobView> JobGet(int64_t id) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    auto it = db_->jobs.find(id);
    if (it == db_->jobs.end()) return std::nullopt;
    return JobView{view(it->second).dump()};
  }

  std::vector<JobView> JobList(const JobListParams& p) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<JobView> out;
    for (const auto& [id, r] : db_->jobs) {
      if (static_cast<int>(out.size()) >= p.limit) break;
      if ((p.state && r.state != *p.state) || (p.kind && r.kind != *p.kind) ||
          (p.queue && r.queue != *p.queue)) {
        continue;
      }
      out.push_back(JobView{view(r).dump()});
    }
    return out;
  }

  void JobProgress(int64_t id, int attempt, double percent, const std::string& step) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    auto it = db_->jobs.find(id);
    if (it == db_->jobs.end() || it->second.attempt != attempt || it->second.state != "running") {
      return;
    }
    it->second.progress = {{"percent", percent},
                           {"step", step.empty() ? json() : json(step)},
                           {"at", iso(db_->now())}};
  }

  RescueResult JobRescueExpired(int limit, int default_max_attempts) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    std::vector<Row*> expired;
    for (auto& [id, r] : db_->jobs) {
      if (r.state == "running" && r.lease_expires_at && *r.lease_expires_at < now) {
        expired.push_back(&r);
      }
    }
    std::sort(expired.begin(), expired.end(),
              [](Row* a, Row* b) { return *a->lease_expires_at < *b->lease_expires_at; });
    if (static_cast<int>(expired.size()) > limit) expired.resize(static_cast<size_t>(limit));
    RescueResult res;
    for (Row* r : expired) {
      const KindDefaults* k = kind_of(r->kind);
      int max_att = r->max_attempts
                        ? *r->max_attempts
                        : (k && k->max_attempts ? *k->max_attempts : default_max_attempts);
      json e = entry(r->attempt, now, "lease_lost",
                     "lease expired: the runner stopped heartbeating (crashed, killed or cut off "
                     "from the database)",
                     r->lease_owner.value_or(""));
      r->errors.push_back(std::move(e));
      if (r->attempt >= max_att) {
        r->worker_id.reset();
        finish(*r, "discarded", now);
        ++res.discarded;
        continue;
      }
      std::vector<int> sched = r->retry_schedule ? *r->retry_schedule : std::vector<int>{};
      if (sched.empty() && k && k->retry_schedule) sched = parse_retry_schedule(*k->retry_schedule);
      double delay;
      if (!sched.empty()) {
        delay = sched[static_cast<size_t>(
            std::min<int>(r->attempt, static_cast<int>(sched.size())) - 1)];
      } else {
        std::uniform_real_distribution<double> jitter(0.5, 1.0);
        delay = std::min(std::pow(2.0, r->attempt - 1), 3600.0) * jitter(db_->rng);
      }
      park(*r, "retryable", now + delay);
      ++res.retried;
    }
    return res;
  }

  int JobExpireTtl(int limit) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    int n = 0;
    for (auto& [id, r] : db_->jobs) {
      if (n >= limit) break;
      if (done_state(r.state) || r.state == "running" || !r.expires_at || *r.expires_at >= now) {
        continue;
      }
      r.errors.push_back(json{{"attempt", r.attempt},
                              {"at", iso(now)},
                              {"kind", "expired"},
                              {"message", "ttl passed before the job started"}});
      finish(r, "cancelled", now);
      ++n;
    }
    return n;
  }

  int JobPrune(const PruneParams& p) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    std::set<int64_t> needed;  // parents of waiting jobs stay
    for (const auto& [id, r] : db_->jobs) {
      if (r.state == "waiting") needed.insert(r.depends_on.begin(), r.depends_on.end());
    }
    std::vector<int64_t> gone;
    for (const auto& [id, r] : db_->jobs) {
      if (static_cast<int>(gone.size()) >= p.limit) break;
      if (!done_state(r.state) || needed.count(id) || !r.finished_at) continue;
      double ttl = r.state == "completed"   ? r.options.value("result_ttl", p.result_ttl_seconds)
                   : r.state == "discarded" ? r.options.value("failure_ttl", p.failure_ttl_seconds)
                                            : p.cancelled_ttl_seconds;
      if (*r.finished_at < now - ttl) gone.push_back(id);
    }
    for (int64_t id : gone) db_->jobs.erase(id);
    return static_cast<int>(gone.size());
  }

  CancelResult JobCancel(int64_t id) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    auto it = db_->jobs.find(id);
    if (it == db_->jobs.end()) return CancelResult::not_found;
    Row& r = it->second;
    if (done_state(r.state)) return CancelResult::already_finished;
    if (r.state == "running") {
      r.cancel_requested = true;
      return CancelResult::requested;
    }
    cancel_waiting(r, "cancelled on request before it ran");
    return CancelResult::cancelled;
  }

  int64_t JobCancelMany(const JobCancelFilter& f, bool dry_run) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    int64_t n = 0;
    for (auto& [id, r] : db_->jobs) {
      if (r.queue != f.queue || done_state(r.state) || r.state == "running" ||
          (f.kind && r.kind != *f.kind) || (f.state && r.state != *f.state)) {
        continue;
      }
      ++n;
      if (!dry_run) cancel_waiting(r, "cancelled on request before it ran (runner jobs cancel)");
    }
    return n;
  }

  std::vector<int64_t> JobCancelRequested(const std::string& worker_id) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<int64_t> ids;
    for (const auto& [id, r] : db_->jobs) {
      if (r.state == "running" && r.lease_owner == worker_id && r.cancel_requested) {
        ids.push_back(id);
      }
    }
    return ids;
  }

  bool JobRetry(int64_t id) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    auto it = db_->jobs.find(id);
    if (it == db_->jobs.end()) return false;
    bool ok = revive(it->second) || make_due(it->second);
    if (ok) db_->notify();
    return ok;
  }

  std::optional<int64_t> JobReplay(int64_t id) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    auto it = db_->jobs.find(id);
    if (it == db_->jobs.end()) return std::nullopt;
    const Row& r = it->second;
    JobInsertParams p;
    p.kind = r.kind;
    p.payload = r.payload.dump();
    p.queue = r.queue;
    p.priority = r.base_priority;
    p.max_attempts = r.max_attempts;
    p.timeout_ms = r.timeout_ms;
    if (r.retry_schedule) {
      std::string s;
      for (int v : *r.retry_schedule) s += (s.empty() ? "" : ",") + std::to_string(v);
      p.retry_schedule = s;
    }
    p.lock_key = r.lock_key;
    p.lock_limit = r.lock_limit;
    if (r.options.contains("result_ttl"))
      p.result_ttl_seconds = r.options["result_ttl"].get<double>();
    if (r.options.contains("failure_ttl")) {
      p.failure_ttl_seconds = r.options["failure_ttl"].get<double>();
    }
    return insert(p).id;
  }

  std::string BatchEnqueue(const std::string&, const std::string&, const std::string&,
                           const std::string&, const std::string&) override {
    throw unsupported("batches");
  }
  std::optional<std::string> BatchStatus(int64_t) override { throw unsupported("batches"); }

  std::vector<int64_t> DeadLetterReplay(const DeadLetterFilter& f) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<int64_t> ids;
    for (Row* r : dead_letters(f)) {
      if (revive(*r)) ids.push_back(r->id);
    }
    if (!ids.empty()) db_->notify();
    return ids;
  }

  std::string WorkflowEnqueue(const std::string&) override { throw unsupported("workflows"); }
  std::optional<std::string> WorkflowStatus(int64_t) override { throw unsupported("workflows"); }
  std::optional<std::string> JobParentResults(int64_t, int64_t, int64_t, int64_t) override {
    throw unsupported("parent results (workflows)");
  }

  std::vector<JobView> DeadLetterList(const DeadLetterFilter& f) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::vector<JobView> out;
    for (Row* r : dead_letters(f)) out.push_back(JobView{view(*r).dump()});
    return out;
  }

  int DeadLetterPurge(const DeadLetterFilter& f) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    auto rows = dead_letters(f);
    for (Row* r : rows) {
      int64_t id = r->id;  // not a reference into the node being erased
      db_->jobs.erase(id);
    }
    return static_cast<int>(rows.size());
  }

  bool LeaderTryAcquire(const std::string& name, const std::string& owner,
                        double ttl_seconds) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    auto it = db_->leaders.find(name);
    if (it != db_->leaders.end() && it->second.first != owner && it->second.second >= now) {
      return false;
    }
    db_->leaders[name] = {owner, now + ttl_seconds};
    return true;
  }

  void LeaderResign(const std::string& name, const std::string& owner) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    if (auto it = db_->leaders.find(name); it != db_->leaders.end() && it->second.first == owner) {
      db_->leaders.erase(it);
    }
  }

  std::pair<int, int> JobResolveDependencies(int limit) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    int promoted = 0, cancelled = 0, seen = 0;
    for (auto& [id, r] : db_->jobs) {
      if (r.state != "waiting") continue;
      if (seen++ >= limit) break;
      int pending = 0;
      std::optional<int64_t> dead_parent;
      for (int64_t p : r.depends_on) {
        auto it = db_->jobs.find(p);
        // A parent pruned from the history counts as gone, like one never inserted: pending.
        if (it == db_->jobs.end() || !done_state(it->second.state)) {
          ++pending;
        } else if (it->second.state != "completed" && (!dead_parent || p < *dead_parent)) {
          dead_parent = p;
        }
      }
      if (dead_parent) {
        r.errors.push_back(json{{"attempt", r.attempt},
                                {"at", iso(now)},
                                {"kind", "dependency"},
                                {"message", "parent job " + std::to_string(*dead_parent) +
                                                " was dead-lettered or cancelled"}});
        finish(r, "cancelled", now);
        ++cancelled;
      } else if (pending == 0) {
        r.state = "available";
        r.run_at = now;
        ++promoted;
      }
    }
    if (promoted > 0) db_->notify();
    return {promoted, cancelled};
  }

  int JobAgePriorities(double seconds_per_point, int limit) override {
    if (seconds_per_point <= 0) return 0;
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    std::optional<int> top;
    for (const auto& [id, r] : db_->jobs) {
      if (r.state == "available" && (!top || r.priority > *top)) top = r.priority;
    }
    if (!top) return 0;
    int n = 0, seen = 0;
    for (auto& [id, r] : db_->jobs) {
      if (r.state != "available" || r.priority >= *top) continue;
      if (seen++ >= limit) break;
      int np =
          std::min(*top, r.base_priority +
                             static_cast<int>(std::floor((now - r.run_at) / seconds_per_point)));
      if (np > r.priority) {
        r.priority = np;
        ++n;
      }
    }
    return n;
  }

  void QueuePause(const std::string& queue) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    db_->paused.insert(queue);
  }
  bool QueueResume(const std::string& queue) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    bool was = db_->paused.erase(queue) > 0;
    if (was) db_->notify();
    return was;
  }
  std::vector<std::string> QueuePaused() override {
    std::lock_guard<std::mutex> lock(db_->mu);
    return {db_->paused.begin(), db_->paused.end()};
  }

  void RateLimitSet(const std::string&, double, double) override {
    throw unsupported("rate limits");
  }
  bool RateLimitRemove(const std::string&) override { throw unsupported("rate limits"); }
  std::string RateLimitList() override { return "[]"; }
  void RateKeyFieldSet(const std::string&, const std::string&, const std::string&) override {
    throw unsupported("rate keys");
  }
  bool RateKeyFieldRemove(const std::string&) override { throw unsupported("rate keys"); }
  std::string RateKeyFieldList() override { return "[]"; }

  bool KindsIdle(const std::vector<std::string>& kinds) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    std::set<std::string> ks(kinds.begin(), kinds.end());
    return std::none_of(db_->jobs.begin(), db_->jobs.end(), [&](const auto& kv) {
      return ks.count(kv.second.kind) &&
             (kv.second.state == "available" || kv.second.state == "running");
    });
  }

  void CronUpsert(const std::vector<CronEntry>& entries) override {
    if (!entries.empty()) throw unsupported("cron entries");
  }
  std::string CronList() override { return "[]"; }
  int CronRun(const CronNext&) override { return 0; }

  void WorkerRegister(const WorkerRegisterParams& p) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    Worker& w = db_->workers[p.worker_id];
    w.kinds = p.kinds;
    w.queues = p.queues;
    w.started_at = now;
    w.heartbeat_at = now;
  }
  void WorkerHeartbeat(const std::string& worker_id, int64_t jobs_done) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    if (auto it = db_->workers.find(worker_id); it != db_->workers.end()) {
      it->second.heartbeat_at = db_->now();
      it->second.jobs_done = std::max(it->second.jobs_done, jobs_done);
    }
  }
  void WorkerUnregister(const std::string& worker_id) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    db_->workers.erase(worker_id);
  }
  bool WorkerServesKind(const std::string& kind, double live_seconds) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    return std::any_of(db_->workers.begin(), db_->workers.end(), [&](const auto& kv) {
      const auto& k = kv.second.kinds;
      return kv.second.heartbeat_at >= now - live_seconds &&
             std::find(k.begin(), k.end(), kind) != k.end();
    });
  }

  void KindDefaultsUpsert(const std::vector<KindDefaults>& kinds) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    for (const auto& k : kinds) db_->kinds[k.kind] = k;
  }

  bool WaitForJobs(int timeout_ms) override {
    std::unique_lock<std::mutex> lock(db_->mu);
    if (!listening_) {  // notifications count from the first Listen (or this call) on
      listening_ = true;
      seen_ = db_->notify_seq;
    }
    bool got = db_->cv.wait_for(lock, std::chrono::milliseconds(std::max(timeout_ms, 0)),
                                [&] { return db_->notify_seq != seen_; });
    seen_ = db_->notify_seq;
    return got;
  }
  void Listen() override {
    std::lock_guard<std::mutex> lock(db_->mu);
    if (listening_) return;
    listening_ = true;
    seen_ = db_->notify_seq;
  }
  bool Ping() override { return true; }

  std::string QueueDepths() override {
    std::lock_guard<std::mutex> lock(db_->mu);
    json out = json::object();
    for (const auto& [id, r] : db_->jobs) {
      if (done_state(r.state)) continue;
      auto& n = out[r.queue][r.state];
      n = n.is_null() ? 1 : n.get<int64_t>() + 1;
    }
    return out.dump();
  }
  std::string QueueThroughput(double seconds) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double since = db_->now() - seconds;
    json out = json::object();
    for (const auto& [id, r] : db_->jobs) {
      if (!done_state(r.state) || !r.finished_at || *r.finished_at < since) continue;
      auto& n = out[r.queue][r.state];
      n = n.is_null() ? 1 : n.get<int64_t>() + 1;
    }
    return out.dump();
  }
  std::string WorkerList(double live_seconds) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double now = db_->now();
    json out = json::array();
    for (const auto& [id, w] : db_->workers) {
      if (w.heartbeat_at < now - live_seconds) continue;
      out.push_back({{"id", id},
                     {"kinds", w.kinds},
                     {"queues", w.queues},
                     {"started_at", iso(w.started_at)},
                     {"heartbeat_at", iso(w.heartbeat_at)},
                     {"jobs_done", w.jobs_done}});
    }
    return out.dump();
  }
  int WorkerPruneDead(double older_than_seconds) override {
    std::lock_guard<std::mutex> lock(db_->mu);
    const double before = db_->now() - older_than_seconds;
    return static_cast<int>(std::erase_if(
        db_->workers, [&](const auto& kv) { return kv.second.heartbeat_at < before; }));
  }
  void WorkerPublish(const std::string&, const std::string&, const std::vector<int64_t>&,
                     const std::vector<std::string>&, const std::vector<int64_t>&, bool) override {}
  void WebhookUrlsSet(const std::vector<std::string>&,
                      const std::vector<std::pair<std::string, std::string>>& urls) override {
    if (!urls.empty()) throw unsupported("webhooks");
  }
  std::vector<WebhookDelivery> WebhookClaim(const std::string&, int, double) override {
    return {};  // no job can ask for one (refused at insert)
  }
  void WebhookDelivered(int64_t, int) override { throw unsupported("webhooks"); }
  void WebhookFailed(int64_t, int, const std::string&, double, int) override {
    throw unsupported("webhooks");
  }
  std::string WebhookForJob(int64_t) override { return "[]"; }

 private:
  // ---- under db_->mu ----

  JobInsertResult insert(const JobInsertParams& p) {
    if (p.unique_period()) throw unsupported("uniqueness over a period (replace, debounce)");
    if (p.rate_key) throw unsupported("rate keys");
    if (p.webhook) throw unsupported("webhooks");
    const double now = db_->now();
    std::optional<std::string> ukey;
    if (p.unique) {
      ukey = p.kind + ":" + json::parse(p.payload, nullptr, false).dump();
    } else if (p.unique_key) {
      ukey = p.unique_key;
    }
    if (ukey) {
      for (const auto& [id, r] : db_->jobs) {
        if (!done_state(r.state) && r.unique_key == ukey) return JobInsertResult{id, false};
      }
    }
    std::vector<int64_t> missing;
    bool parents_done = true;
    for (int64_t d : p.depends_on) {
      auto it = db_->jobs.find(d);
      if (it == db_->jobs.end()) {
        missing.push_back(d);
      } else if (it->second.state != "completed") {
        parents_done = false;
      }
    }
    if (!missing.empty()) {
      std::string list;
      for (int64_t m : missing) list += (list.empty() ? "" : ",") + std::to_string(m);
      throw StoreError("--depends-on names jobs that do not exist: {" + list + "}", false);
    }
    Row r;
    try {
      r.payload = json::parse(p.payload);
    } catch (const json::exception& e) {
      throw StoreError(std::string("payload is not valid JSON: ") + e.what(), false, true);
    }
    r.id = db_->next_id++;
    r.kind = p.kind;
    const KindDefaults* k = kind_of(p.kind);
    r.queue = p.queue ? *p.queue : (k && k->default_queue ? *k->default_queue : "default");
    r.priority = r.base_priority = p.priority;
    if (p.run_at) {
      auto t = parse_iso(*p.run_at);
      if (!t) throw unsupported("run_at '" + *p.run_at + "' (ISO 8601 only)");
      r.run_at = *t;
    } else {
      r.run_at = now + p.delay_seconds;
    }
    r.state = !p.depends_on.empty() && !parents_done ? "waiting"
              : (p.run_at || p.delay_seconds > 0)    ? "scheduled"
                                                     : "available";
    r.max_attempts = p.max_attempts;
    r.timeout_ms = p.timeout_ms;
    if (p.retry_schedule) r.retry_schedule = parse_retry_schedule(*p.retry_schedule);
    if (p.ttl_seconds) r.expires_at = now + *p.ttl_seconds;
    if (p.result_ttl_seconds) r.options["result_ttl"] = *p.result_ttl_seconds;
    if (p.failure_ttl_seconds) r.options["failure_ttl"] = *p.failure_ttl_seconds;
    if (p.traceparent) r.options["traceparent"] = *p.traceparent;
    r.created_at = now;
    r.unique_key = ukey;
    r.lock_key = p.lock_key;
    r.lock_limit = p.lock_limit;
    r.depends_on = p.depends_on;
    int64_t id = r.id;
    db_->jobs.emplace(id, std::move(r));
    db_->notify();  // every insert, as migration 1's statement trigger does
    return JobInsertResult{id, true};
  }

  // Runs `f` (which appends the ids it inserts to `ids`); on an exception removes them again,
  // as the PostgreSQL store's transaction would.
  template <typename F>
  void all_or_nothing(std::vector<int64_t>& ids, F&& f) {
    try {
      f();
    } catch (...) {
      for (int64_t id : ids) db_->jobs.erase(id);
      throw;
    }
  }

  const KindDefaults* kind_of(const std::string& kind) const {
    auto it = db_->kinds.find(kind);
    return it == db_->kinds.end() ? nullptr : &it->second;
  }

  json entry(int attempt, double now, const std::string& kind, const std::string& message,
             const std::string& worker) {
    return {{"attempt", attempt}, {"at", iso(now)},      {"kind", kind},
            {"message", message}, {"worker_id", worker}, {"host", host_}};
  }

  // Back to waiting: lease cleared.
  static void park(Row& r, const char* state, double run_at) {
    r.state = state;
    r.run_at = run_at;
    r.lease_owner.reset();
    r.lease_expires_at.reset();
    r.cancel_requested = false;
  }

  // To the history (jr_jobs_done); a discarded or cancelled job of a kind with a finalizer
  // enqueues the finalizer's job, once per finished job (migration 10).
  void finish(Row& r, const char* state, double now) {
    r.state = state;
    r.finished_at = now;
    r.lease_owner.reset();
    r.lease_expires_at.reset();
    r.cancel_requested = false;
    r.unique_key.reset();
    if (r.state == "completed") return;
    const KindDefaults* k = kind_of(r.kind);
    if (!k || !k->finalizer) return;
    std::string key = "jr:finalize:" + std::to_string(r.id);
    for (const auto& [id, other] : db_->jobs) {
      if (!done_state(other.state) && other.unique_key == key) return;
    }
    const KindDefaults* f = kind_of(*k->finalizer);
    JobInsertParams p;
    p.kind = *k->finalizer;
    p.queue = f && f->default_queue ? *f->default_queue : r.queue;
    p.priority = r.priority;
    json last = r.errors.empty() ? json::object() : r.errors.back();
    p.payload = json{
        {"job_id", r.id},
        {"kind", r.kind},
        {"state", r.state},
        {"error_kind", last.value("kind", json())},
        {"error", last.value("message", json())},
        {"payload",
         r.payload}}.dump();
    p.unique_key = key;
    (void)insert(p);  // one finalizer per job: the unique key makes a second insert a no-op
  }

  // Waiting children whose parents have all completed become available now (as the completion
  // statement's promote step does). True when any did.
  bool promote_children(int64_t parent, double now) {
    bool any = false;
    for (auto& [id, c] : db_->jobs) {
      if (c.state != "waiting" ||
          std::find(c.depends_on.begin(), c.depends_on.end(), parent) == c.depends_on.end()) {
        continue;
      }
      bool all = std::all_of(c.depends_on.begin(), c.depends_on.end(), [&](int64_t p) {
        auto it = db_->jobs.find(p);
        return it != db_->jobs.end() && it->second.state == "completed";
      });
      if (all) {
        c.state = "available";
        c.run_at = now;
        any = true;
      }
    }
    return any;
  }

  void renew(Row& r, const std::string& worker_id, double lease_seconds,
             std::vector<int64_t>& cancel, size_t* renewed) {
    if (r.state != "running" || r.lease_owner != worker_id) return;
    r.lease_expires_at = db_->now() + lease_seconds;
    if (renewed) ++*renewed;
    if (r.cancel_requested) cancel.push_back(r.id);
  }

  void cancel_waiting(Row& r, const std::string& message) {
    const double now = db_->now();
    r.errors.push_back(json{
        {"attempt", r.attempt}, {"at", iso(now)}, {"kind", "cancelled"}, {"message", message}});
    finish(r, "cancelled", now);
  }

  // A dead letter or cancelled job back to available, with at least one attempt left.
  bool revive(Row& r) {
    if (r.state != "discarded" && r.state != "cancelled") return false;
    const KindDefaults* k = kind_of(r.kind);
    int max_att = r.max_attempts ? *r.max_attempts : (k && k->max_attempts ? *k->max_attempts : 25);
    r.max_attempts = std::max(max_att, r.attempt + 1);
    r.state = "available";
    r.run_at = db_->now();
    r.finished_at.reset();
    r.started_at.reset();
    r.worker_id.reset();
    r.result = json();
    r.progress = json();
    return true;
  }

  bool make_due(Row& r) {
    if (r.state != "scheduled" && r.state != "retryable") return false;
    r.state = "available";
    r.run_at = db_->now();
    return true;
  }

  std::vector<Row*> dead_letters(const DeadLetterFilter& f) {
    if (f.since || f.before) {
      for (const auto* t : {&f.since, &f.before}) {
        if (*t && !parse_iso(**t)) throw unsupported("time '" + **t + "' (ISO 8601 only)");
      }
    }
    std::set<int64_t> only(f.ids.begin(), f.ids.end());
    std::vector<Row*> out;
    for (auto& [id, r] : db_->jobs) {
      if (static_cast<int>(out.size()) >= f.limit) break;
      if (r.state != "discarded" || (f.kind && r.kind != *f.kind) ||
          (f.queue && r.queue != *f.queue) || (!only.empty() && !only.count(id))) {
        continue;
      }
      double fin = r.finished_at.value_or(0);
      if ((f.since && fin < *parse_iso(*f.since)) || (f.before && fin >= *parse_iso(*f.before))) {
        continue;
      }
      out.push_back(&r);
    }
    return out;
  }

  // A row as jr_jobs_all shows it (row_to_json).
  json view(const Row& r) const {
    bool live = !done_state(r.state);
    std::optional<std::string> worker = live ? r.lease_owner : r.worker_id;
    return {{"id", r.id},
            {"queue", r.queue},
            {"kind", r.kind},
            {"payload", r.payload},
            {"state", r.state},
            {"priority", r.priority},
            {"attempt", r.attempt},
            {"max_attempts", r.max_attempts ? json(*r.max_attempts) : json()},
            {"result", r.result},
            {"progress", r.progress},
            {"errors", r.errors},
            {"options", r.options},
            {"created_at", iso(r.created_at)},
            {"started_at", iso(r.started_at)},
            {"finished_at", iso(r.finished_at)},
            {"run_at", live ? iso(r.run_at) : json()},
            {"lease_owner", live && r.lease_owner ? json(*r.lease_owner) : json()},
            {"lease_expires_at", live ? iso(r.lease_expires_at) : json()},
            {"timeout_ms", r.timeout_ms ? json(*r.timeout_ms) : json()},
            {"worker_id", worker ? json(*worker) : json()},
            {"worker_host", worker ? json(host_) : json()}};
  }

  std::shared_ptr<Db> db_;
  bool listening_ = false;
  uint64_t seen_ = 0;  // the last notification this store saw (Listen / WaitForJobs)
  std::string host_ = host_name();
};

}  // namespace

bool is_memory_url(const std::string& url) { return url.rfind(kScheme, 0) == 0; }

std::unique_ptr<Store> open_memory_store(const std::string& url) {
  if (!is_memory_url(url) || url.size() == std::char_traits<char>::length(kScheme)) {
    throw StoreError("not an in-memory store URL (memory://NAME): " + url, false);
  }
  return std::make_unique<MemStore>(database(url));
}

void memory_store_use_clock(const std::string& url, std::shared_ptr<const Clock> clock) {
  auto db = database(url);
  std::lock_guard<std::mutex> lock(db->mu);
  db->clock = std::move(clock);
}

void memory_store_drop(const std::string& url) {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  registry().erase(url.substr(std::min(url.size(), std::char_traits<char>::length(kScheme))));
}

}  // namespace jr
