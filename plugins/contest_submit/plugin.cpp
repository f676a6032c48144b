// The `contest_submit` plugin: judges one contest submission per job and updates the standings,
// exactly once per submission id (see src/store.hpp). Thin: payload parsing, judging and SQL
// live in the jr_contest_judge library shared with the `contest-submit` CLI.
//
// Threading: handle() runs concurrently; each call borrows its own JudgeConnection from a
// mutex-protected pool (one PostgreSQL connection per concurrent call, kept for reuse).
#include <jobrunner/plugin.hpp>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "contest_submit/src/config.hpp"
#include "contest_submit/src/store.hpp"
#include "contest_submit/src/submission.hpp"

namespace {

class ConnectionPool {
 public:
  ConnectionPool(std::string url, int64_t statement_timeout_ms, std::size_t max_idle)
      : url_(std::move(url)), timeout_ms_(statement_timeout_ms), max_idle_(max_idle) {}

  std::unique_ptr<contest::JudgeConnection> acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    return std::make_unique<contest::JudgeConnection>(url_, timeout_ms_);
  }

  void release(std::unique_ptr<contest::JudgeConnection> c) {
    if (!c || !c->is_open()) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
  }

 private:
  const std::string url_;
  const int64_t timeout_ms_;
  const std::size_t max_idle_;
  std::mutex mu_;
  std::vector<std::unique_ptr<contest::JudgeConnection>> idle_;  // guarded by mu_
};

// Returns the connection to the pool unless the call failed with it (its state is unknown).
class Lease {
 public:
  explicit Lease(ConnectionPool& pool) : pool_(pool), conn_(pool.acquire()) {}
  ~Lease() {
    if (ok_) pool_.release(std::move(conn_));
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  contest::JudgeConnection& operator*() { return *conn_; }
  void done() { ok_ = true; }

 private:
  ConnectionPool& pool_;
  std::unique_ptr<contest::JudgeConnection> conn_;
  bool ok_ = false;
};

class ContestSubmit : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "contest_submit";
    i.version = "1.0.0";
    // Producers put each submission on its contest's queue, contest:submissions:{contest_id};
    // this default only catches producers that forget to.
    i.kinds.push_back({"contest_submit", "contest:submissions:default", 30000, 10, ""});
    // "database": its own role and schema (plugin_contest_submit) on the runner's database.
    i.manifest = {{"database", true},
                  {"sandbox", {{"network", "loopback"}, {"memory_mb", 256}}},
                  {"env",
                   {{"CONTEST_SUBMIT_DATABASE_URL", "database_url"},
                    {"CONTEST_SUBMIT_STATEMENT_TIMEOUT_MS", "statement_timeout_ms"}}}};
    return i;
  }

  // Config: src/config.hpp (database_url, statement_timeout_ms, pool_max_idle).
  void init(const nlohmann::json& config) override {
    contest::Config c = contest::parse_config(config);
    pool_ =
        std::make_unique<ConnectionPool>(c.database_url, c.statement_timeout_ms, c.pool_max_idle);
    Lease conn(*pool_);
    contest::ensure_schema((*conn).raw());
    conn.done();
  }

  nlohmann::json handle(jobrunner::Job& job) override {
    // No job.progress() here: a judgement takes about a millisecond and every progress report
    // is a synchronous database write in the host.
    contest::Submission s;
    try {
      s = contest::parse_submission(job.payload());
    } catch (const contest::InvalidSubmission& e) {
      throw jobrunner::PermanentError(e.what());
    }
    // Routing is the producer's job; a submission on another contest's queue is still judged
    // for its own contest, but the producer should hear about it.
    constexpr std::string_view kPrefix = "contest:submissions:";
    std::string_view queue = job.queue();
    if (queue.substr(0, kPrefix.size()) == kPrefix && queue.substr(kPrefix.size()) != "default" &&
        queue.substr(kPrefix.size()) != std::to_string(s.contest_id)) {
      job.warn("submission " + s.id + " of contest " + std::to_string(s.contest_id) +
               " arrived on queue " + std::string(queue));
    }
    try {
      Lease conn(*pool_);
      contest::JudgeOutcome o = (*conn).judge(s);
      // Seed 004's operators read one line per judged submission (a redelivery included).
      std::string verdict(contest::to_string(o.verdict));
      job.info((o.redelivered ? "submission " + s.id + " already judged (redelivered)"
                              : "judged submission " + s.id) +
               ": job " + std::to_string(job.id()) + ", contest " + std::to_string(o.contest_id) +
               ", team " + o.team_id + ", problem " + o.problem_id + ", queue " +
               std::string(queue) + ", verdict " + verdict + ", score " + std::to_string(o.score));
      note_queue(*conn, job, s);
      conn.done();
      if (o.conflict) {
        job.warn("submission " + s.id +
                 " was redelivered with different content; kept the stored verdict");
      }
      return contest::to_json(o);
    } catch (const contest::ProblemConfigError& e) {
      throw jobrunner::PermanentError(std::string("contest configuration error: ") + e.what());
    } catch (const pqxx::broken_connection& e) {
      throw jobrunner::RetryableError(std::string("database connection lost: ") + e.what());
    } catch (const pqxx::in_doubt_error& e) {
      // The commit may or may not have happened; judging again is safe (idempotent).
      throw jobrunner::RetryableError(std::string("commit in doubt: ") + e.what());
    } catch (const pqxx::sql_error& e) {
      throw jobrunner::RetryableError(std::string("database error: ") + e.what());
    }
  }

 private:
  // Logs the discovery of a queue once for all runners: the first time this process judges
  // from a queue, it records the queue in contest_queues, and logs when that insert was the
  // first anywhere. The verdict is already committed: a failure here only costs the log line
  // (tried again on the next submission from that queue).
  void note_queue(contest::JudgeConnection& conn, jobrunner::Job& job,
                  const contest::Submission& s) {
    std::string queue(job.queue());
    {
      std::lock_guard<std::mutex> lock(queues_mu_);
      if (known_queues_.count(queue)) return;
    }
    bool first;
    try {
      first = conn.note_queue(queue, s.contest_id, job.id(), s.id);
    } catch (const pqxx::failure& e) {
      job.warn("recording queue " + queue + " in contest_queues failed: " + e.what());
      return;
    }
    {
      std::lock_guard<std::mutex> lock(queues_mu_);
      known_queues_.insert(queue);
    }
    if (first) {
      job.info("discovered queue " + queue + ": first submission " + s.id + " of contest " +
               std::to_string(s.contest_id) + " (job " + std::to_string(job.id()) + ")");
    }
  }

  std::unique_ptr<ConnectionPool> pool_;
  std::mutex queues_mu_;
  std::set<std::string> known_queues_;  // queues this process has recorded; guarded by queues_mu_
};

}  // namespace

JOBRUNNER_PLUGIN(ContestSubmit)
