// Job subcommands: enqueue, status, jobs ls, jobs cancel.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"
#include "job_options.hpp"
#include "log.hpp"
#include "settings_table.hpp"
#include "util.hpp"

namespace jr::cli {

// host/cli/cli_batch.cpp: the jobs of `runner enqueue` as one batch (jr_batch_enqueue()).
int enqueue_batch(const Config& cfg, const EnqueueFlags& f, const nlohmann::json& options,
                  const std::vector<std::string>& payloads);
// host/cli/cli_workflow.cpp: `runner enqueue --workflow FILE` (jr_workflow_enqueue()).
int enqueue_workflow(const Config& cfg, const std::string& file);

void apply_worker_flags(Config& cfg, const WorkerFlags& w) {
  const Config defaults;
  for (const Setting& s : settings()) {
    if (!*s.flag || s.global_flag) continue;
    std::string text = w.of(setting_name(s));
    if (text.empty()) continue;
    if (std::holds_alternative<bool Config::*>(s.field)) {
      cfg.*std::get<bool Config::*>(s.field) = flag_sets(defaults, s);
      continue;
    }
    try {
      set_from_text(cfg, s, text);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string(s.flag) + ": " + e.what());
    }
  }
}

Config build_config(const GlobalFlags& g) {
  Config cfg = load_config(g.config_file);
  if (!g.database.empty()) cfg.database_url = g.database;
  if (!g.data_dir.empty()) cfg.data_dir = g.data_dir;
  if (!g.log_level.empty()) cfg.log_level = g.log_level;
  try {
    log::set_level(log::parse_level(cfg.log_level));
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("log_level: ") + e.what());
  }
  return cfg;
}

namespace {

// The `runner enqueue` flag behind a job option, for messages.
std::string flag_of(const std::string& field) {
  static const std::map<std::string, std::string> flags = {
      {"kind", "KIND"},
      {"payload", "--payload"},
      {"queue", "--queue"},
      {"priority", "--priority"},
      {"delay_seconds", "--delay"},
      {"run_at", "--run-at"},
      {"max_attempts", "--max-attempts"},
      {"timeout_seconds", "--timeout"},
      {"retry_schedule", "--retry-schedule"},
      {"ttl_seconds", "--ttl"},
      {"result_ttl_seconds", "--result-ttl"},
      {"failure_ttl_seconds", "--failure-ttl"},
      {"unique", "--unique"},
      {"unique_key", "--unique-key"},
      {"lock_key", "--lock-key"},
      {"lock_limit", "--lock-limit"},
      {"depends_on", "--depends-on"},
      {"webhook", "--webhook"},
      {"unique_for_seconds", "--unique-for"},
      {"unique_states", "--unique-states"},
      {"replace", "--replace"},
      {"debounce_seconds", "--debounce"},
      {"debounce_max_seconds", "--debounce-max"},
      {"rate_key", "--rate-key"},
      {"traceparent", "--traceparent"}};
  auto it = flags.find(field);
  return it == flags.end() ? field : it->second;
}

int refuse(const std::string& msg) {
  std::cerr << "runner enqueue: " << msg << "\nnothing was enqueued\n";
  return kExitUsage;
}

// Rows read from a large --payload-file, shown on a terminal: a line refreshed every 200 ms and
// a summary, so a long read does not look like a hang. Silent when stderr is not a terminal.
class Progress {
 public:
  explicit Progress(bool on) : on_(on), start_(clock::now()), last_(start_) {}
  bool on() const { return on_; }
  void rows(size_t n) {
    if (!on_ || (n & 1023) != 0) return;
    auto now = clock::now();
    if (now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    std::fprintf(stderr, "\rrunner enqueue: %zu rows read (%.0f rows/s)   ", n, rate(n, now));
  }
  void done(size_t n, const char* what) {
    if (!on_) return;
    auto now = clock::now();
    std::fprintf(stderr, "\rrunner enqueue: %zu %s in %.2f s (%.0f rows/s)   \n", n, what,
                 std::chrono::duration<double>(now - start_).count(), rate(n, now));
    start_ = now;
  }

 private:
  using clock = std::chrono::steady_clock;
  double rate(size_t n, clock::time_point now) const {
    double secs = std::chrono::duration<double>(now - start_).count();
    return secs > 0 ? static_cast<double>(n) / secs : 0.0;
  }
  bool on_;
  clock::time_point start_, last_;
};

constexpr off_t kLargeInput = 1 << 20;  // progress on a terminal from 1 MiB (or a pipe)

// Reads --payload-file (or standard input for "-") line by line: every non-blank line must be a
// JSON object without NUL characters. Returns 0, or an exit code after printing why.
int read_payload_file(const std::string& path, std::vector<std::string>& payloads,
                      Progress*& progress_out, std::unique_ptr<Progress>& progress) {
  bool std_in = path == "-";
  std::string name = std_in ? "<stdin>" : path;
  int fd = std_in ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return refuse("cannot open --payload-file " + path + ": " + std::strerror(errno));
  struct FdCloser {
    int fd;
    bool own;
    ~FdCloser() {
      if (own) ::close(fd);
    }
  } closer{fd, !std_in};
  struct stat st {};
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    return refuse("--payload-file " + path +
                  " is a directory; give a JSON-lines file (one payload object per line), or - "
                  "for standard input");
  }
  bool large = S_ISREG(st.st_mode) ? st.st_size >= kLargeInput : !isatty(fd);
  progress = std::make_unique<Progress>(large && isatty(STDERR_FILENO));
  progress_out = progress.get();
  std::string buf;
  std::vector<char> chunk(1 << 20);
  size_t lineno = 0;
  bool eof = false;
  while (!eof) {
    ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      std::cerr << "runner enqueue: cannot read " << name << ": " << std::strerror(errno)
                << "\nnothing was enqueued\n";
      return kExitError;
    }
    eof = n == 0;
    buf.append(chunk.data(), static_cast<size_t>(n));
    size_t pos = 0;
    for (;;) {
      size_t end = buf.find('\n', pos);
      if (end == std::string::npos) {
        if (!eof || pos == buf.size()) break;
        end = buf.size();  // the last line has no newline
      }
      std::string_view line(buf.data() + pos, end - pos);
      pos = std::min(end + 1, buf.size());
      ++lineno;
      // A UTF-8 byte order mark (files saved by some editors): JSON parsers skip it, jsonb
      // refuses it, and the line goes to the database as it is.
      if (line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      try {
        ops::check_payload_text(line);
      } catch (const ops::JobOptionError& e) {
        if (progress->on()) std::fputc('\n', stderr);
        return refuse(name + ":" + std::to_string(lineno) + ": the payload " + e.detail());
      }
      payloads.emplace_back(line);
      progress->rows(payloads.size());
      if (end == buf.size()) break;
    }
    buf.erase(0, pos);
  }
  progress->done(payloads.size(), "rows read");
  return kExitOk;
}

}  // namespace

int cmd_enqueue(const GlobalFlags& g, const EnqueueFlags& f) {
  if (!f.workflow.empty()) return enqueue_workflow(build_config(g), f.workflow);
  if (f.kind.empty()) {
    std::cerr << "runner enqueue: kind is required (or --workflow FILE)\n";
    return kExitUsage;
  }
  if (f.payload.empty() == f.payload_file.empty()) {
    std::cerr << "runner enqueue: give exactly one of --payload JSON or --payload-file FILE "
                 "(- for standard input)\n";
    return kExitUsage;
  }
  // The flags as the options object of the one job-options parser (ops/job_options.hpp),
  // which the HTTP API and plugins use too; `given` keeps each flag's text for messages.
  nlohmann::json o = nlohmann::json::object();
  std::map<std::string, std::string> given;
  auto set = [&](const char* key, const std::string& text, nlohmann::json value) {
    o[key] = std::move(value);
    given[key] = text;
  };
  try {
    auto duration = [&](const char* key, const std::string& text) {
      if (text.empty()) return;
      try {
        set(key, text, parse_duration_seconds(text));
      } catch (const std::invalid_argument& e) {
        throw ops::JobOptionError(key, e.what());
      }
    };
    if (!f.queue.empty()) set("queue", f.queue, f.queue);
    if (f.priority != 0) set("priority", std::to_string(f.priority), f.priority);
    duration("delay_seconds", f.delay);
    if (!f.run_at.empty()) set("run_at", f.run_at, f.run_at);
    if (f.max_attempts > 0) set("max_attempts", std::to_string(f.max_attempts), f.max_attempts);
    duration("timeout_seconds", f.timeout);
    if (!f.retry_schedule.empty()) set("retry_schedule", f.retry_schedule, f.retry_schedule);
    duration("ttl_seconds", f.ttl);
    duration("result_ttl_seconds", f.result_ttl);
    duration("failure_ttl_seconds", f.failure_ttl);
    if (f.unique) set("unique", "", true);
    if (!f.unique_key.empty()) set("unique_key", f.unique_key, f.unique_key);
    if (!f.lock_key.empty()) set("lock_key", f.lock_key, f.lock_key);
    if (f.lock_limit > 0) set("lock_limit", std::to_string(f.lock_limit), f.lock_limit);
    if (!f.webhook.empty()) set("webhook", log::redact(f.webhook), f.webhook);
    duration("unique_for_seconds", f.unique_for);
    if (!f.unique_states.empty()) {
      set("unique_states", f.unique_states, split_list(f.unique_states));
    }
    if (f.replace) set("replace", "", true);
    duration("debounce_seconds", f.debounce);
    duration("debounce_max_seconds", f.debounce_max);
    if (!f.rate_key.empty()) set("rate_key", f.rate_key, f.rate_key);
    if (!f.traceparent.empty()) set("traceparent", f.traceparent, f.traceparent);
    if (!f.depends_on.empty()) {
      nlohmann::json ids = nlohmann::json::array();
      for (const auto& id : split_list(f.depends_on)) {
        try {
          ids.push_back(ops::parse_job_id(id));
        } catch (const std::invalid_argument& e) {
          throw ops::JobOptionError("depends_on", e.what());
        }
      }
      set("depends_on", f.depends_on, ids);
    }
  } catch (const ops::JobOptionError& e) {
    return refuse(flag_of(e.field()) + ": " + e.detail());
  }

  // One payload per job; with --payload-file every line is checked (not re-serialised: jsonb
  // normalises it) and the jobs share `base`, so none of it is copied per line.
  nlohmann::json doc = nlohmann::json::object();
  if (!f.payload.empty()) {
    try {
      doc = nlohmann::json::parse(f.payload);
    } catch (const nlohmann::json::parse_error& e) {
      return refuse(std::string("--payload is not valid JSON: ") + e.what());
    }
  }
  JobInsertParams base;
  try {
    base = ops::job_from_parts(f.kind, doc, o);
  } catch (const ops::JobOptionError& e) {
    auto it = given.find(e.field());
    // The value as given, quoted and escaped (it may hold control bytes or invalid UTF-8).
    std::string value =
        it == given.end() || it->second.empty()
            ? ""
            : " " + nlohmann::json(it->second)
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return refuse(flag_of(e.field()) + value + ": " + e.detail());
  }
  std::vector<std::string> payloads;
  std::unique_ptr<Progress> progress_owner;
  Progress* progress = nullptr;
  if (!f.payload.empty()) {
    payloads.push_back(std::move(base.payload));
    base.payload = "{}";
  } else if (int rc = read_payload_file(f.payload_file, payloads, progress, progress_owner)) {
    return rc;
  }
  bool as_batch = !f.batch_on_complete.empty() || !f.batch_on_failure.empty();
  if (!as_batch && !f.batch_payload.empty()) {
    return refuse("--batch-payload needs --batch-on-complete or --batch-on-failure");
  }
  Config cfg = build_config(g);
  if (as_batch) return enqueue_batch(cfg, f, o, payloads);
  auto store = cli::open_store(cfg);
  // Parents must exist: bad input (exit 2), found before anything is written.
  std::vector<std::string> missing;
  for (int64_t id : base.depends_on) {
    if (!store->JobGet(id)) missing.push_back(std::to_string(id));
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ",") + m;
    return refuse("--depends-on: no job with id " + list);
  }
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> ids;
  bool one_by_one =
      base.unique || base.unique_key || !base.depends_on.empty() || base.unique_period();
  if (payloads.size() == 1 || one_by_one) {
    JobInsertParams p = base;
    for (auto& payload : payloads) {
      p.payload = std::move(payload);
      JobInsertResult r = store->JobInsertEx(p);
      if (r.replaced) {
        log::info("a pending job with the same unique key was updated; returning its id",
                  {{"job_id", r.id}});
      } else if (!r.inserted) {
        log::info("a job with the same unique key already exists; returning its id",
                  {{"job_id", r.id}});
      }
      ids.push_back(r.id);
    }
  } else {
    ids = store->JobInsertBulk(base, payloads);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log::info("bulk enqueue done", {{"jobs", ids.size()},
                                    {"seconds", secs},
                                    {"jobs_per_second", secs > 0 ? ids.size() / secs : 0.0}});
  }
  if (progress) progress->done(ids.size(), "jobs inserted");
  std::string out;
  out.reserve(ids.size() * 8);
  for (int64_t id : ids) out += std::to_string(id) + "\n";
  std::cout << out << std::flush;
  return cli::kExitOk;
}

int cmd_status(const GlobalFlags& g, int64_t id, bool json) {
  Config cfg = build_config(g);
  auto store = cli::open_store(cfg);
  auto job = store->JobGet(id);
  if (!job) {
    std::cerr << "runner status: no job with id " << id << "\n";
    return cli::kExitNotFound;
  }
  auto doc = nlohmann::json::parse(job->json);
  std::string state = doc.value("state", "");
  std::string note;
  if (state == "available" || state == "scheduled" || state == "retryable") {
    std::string kind = doc.value("kind", "");
    if (!store->WorkerServesKind(kind, 60)) {
      note = "no running runner has a loaded plugin that handles kind '" + kind +
             "'; the job waits until one starts";
    }
  }
  auto hooks = nlohmann::json::parse(store->WebhookForJob(id));  // host/ops: delivery state
  for (auto& h : hooks) h["url"] = log::redact(h.value("url", ""));
  if (doc.contains("options") && doc["options"].contains("webhook")) {  // may carry a token
    doc["options"]["webhook"] = log::redact(doc["options"].value("webhook", ""));
  }
  if (json) {
    doc["runs"] = job_runs(doc);
    if (!hooks.empty()) doc["webhook"] = hooks;
    if (!note.empty()) doc["note"] = note;
    std::cout << doc.dump(2) << "\n";
  } else {
    std::cout << cli::render_job(job->json);
    for (const auto& h : hooks) {
      std::cout << "  webhook:   " << h.value("event", "") << " -> " << h.value("url", "") << ": "
                << h.value("state", "") << " after " << h.value("attempts", 0) << " attempt(s)"
                << (h["last_error"].is_string() ? " (" + h["last_error"].get<std::string>() + ")"
                                                : std::string())
                << "\n";
    }
    if (!note.empty()) std::cout << "  note:      " << note << "\n";
  }
  return cli::kExitOk;
}

int cmd_jobs_ls(const GlobalFlags& g, const JobListParams& p, bool json) {
  Config cfg = build_config(g);
  auto store = cli::open_store(cfg);
  auto rows = store->JobList(p);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) arr.push_back(nlohmann::json::parse(r.json));
    std::cout << arr.dump(2) << "\n";
    return cli::kExitOk;
  }
  std::printf("%-10s %-20s %-16s %-10s %-8s %s\n", "ID", "KIND", "QUEUE", "STATE", "ATTEMPT",
              "CREATED");
  for (const auto& r : rows) {
    auto j = nlohmann::json::parse(r.json);
    std::printf("%-10lld %-20s %-16s %-10s %-8d %s\n", static_cast<long long>(j.value("id", 0LL)),
                j.value("kind", "").c_str(), j.value("queue", "").c_str(),
                j.value("state", "").c_str(), j.value("attempt", 0),
                j.value("created_at", "").c_str());
  }
  return cli::kExitOk;
}

int cmd_jobs_cancel(const GlobalFlags& g, const JobsCancelFlags& f) {
  static const std::set<std::string> states = {"waiting", "scheduled", "available", "retryable"};
  if (!f.state.empty() && !states.count(f.state)) {
    std::cerr << "runner jobs cancel: --state must be waiting, scheduled, available or retryable"
              << (f.state == "running" ? " (stop running jobs one by one with runner cancel ID)"
                                       : "")
              << ", got '" << f.state << "'\n";
    return kExitUsage;
  }
  JobCancelFilter filter;
  filter.queue = f.queue;
  if (!f.kind.empty()) filter.kind = f.kind;
  if (!f.state.empty()) filter.state = f.state;
  std::string what = "in queue '" + f.queue + "'" +
                     (f.kind.empty() ? std::string() : " of kind '" + f.kind + "'") +
                     (f.state.empty() ? std::string() : " in state " + f.state);
  auto store = open_store(build_config(g));
  bool confirmed = f.yes;
  if (!confirmed) {
    int64_t n = store->JobCancelMany(filter, true);
    if (n == 0) {
      std::cout << "0 jobs cancelled: no waiting job " << what << "\n";
      return kExitOk;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) {
      std::cerr << "runner jobs cancel: " << n << " job(s) " << what
                << " would be cancelled; add --yes to cancel them\n";
      return kExitUsage;
    }
    std::cerr << "Cancel " << n << " job(s) " << what << "? [y/N] " << std::flush;
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      std::cerr << "nothing was cancelled\n";
      return kExitUsage;
    }
  }
  int64_t n = store->JobCancelMany(filter, false);
  std::cout << n << " job(s) cancelled " << what << "\n";
  return kExitOk;
}

void register_enqueue(CLI::App& app, Context& ctx) {
  auto ef = std::make_shared<EnqueueFlags>();
  auto* enqueue = app.add_subcommand("enqueue", "add jobs; prints each new job id on a line");
  enqueue->fallthrough();
  // Required unless --workflow is given (cmd_enqueue says so).
  enqueue->add_option("kind", ef->kind, "job kind");
  enqueue->add_option("--payload", ef->payload, "payload JSON");
  enqueue->add_option("--payload-file", ef->payload_file,
                      "JSON-lines file, one payload per line (- for standard input)");
  enqueue->add_option("--queue", ef->queue, "queue (default: the kind's default, else 'default')");
  enqueue->add_option("--priority", ef->priority, "higher runs first (default 0)");
  auto* delay = enqueue->add_option("--delay", ef->delay, "run after this long (30s, 5m)");
  enqueue->add_option("--run-at", ef->run_at, "run at this time (ISO 8601)")->excludes(delay);
  enqueue->add_option("--max-attempts", ef->max_attempts, "attempts before the dead letter queue")
      ->check(CLI::Range(1, 1000000));
  enqueue->add_option("--timeout", ef->timeout, "per-attempt timeout (90s, 5m)");
  enqueue->add_option("--retry-schedule", ef->retry_schedule,
                      "retry delays in seconds: 60,300,900");

  enqueue->add_option("--ttl", ef->ttl, "cancel the job if it has not started within this time");
  enqueue->add_option("--result-ttl", ef->result_ttl,
                      "keep the finished job this long (default 1d)");
  enqueue->add_option("--failure-ttl", ef->failure_ttl,
                      "keep the dead letter this long (default 30d)");

  auto* unique = enqueue->add_flag("--unique", ef->unique,
                                   "no second job while one with this kind and payload waits "
                                   "or runs: print the existing id");
  enqueue->add_option("--unique-key", ef->unique_key, "uniqueness by this key instead")
      ->excludes(unique);
  enqueue->add_option("--unique-for", ef->unique_for,
                      "no second job with this key (--unique-key, else kind and payload) "
                      "enqueued within this period, finished or not (1h, 30m)");
  enqueue->add_option("--unique-states", ef->unique_states,
                      "the states in which a job with the key blocks another "
                      "(available,scheduled,running,completed,...)");
  enqueue->add_flag("--replace", ef->replace,
                    "update the pending job with the key (payload, run time) instead of "
                    "refusing; a running one gets a successor");
  enqueue->add_option("--debounce", ef->debounce,
                      "run this long after the last enqueue with the key (5s)");
  enqueue->add_option("--debounce-max", ef->debounce_max,
                      "with --debounce: never later than this after the first (default 10x)");
  enqueue->add_option("--rate-key", ef->rate_key,
                      "claim under this key's token bucket (tenant:42; `runner limit set --key "
                      "'tenant:*'` sets the default per key) instead of the queue's or kind's");
  enqueue->add_option("--traceparent", ef->traceparent,
                      "W3C traceparent of the producer's span: the job's attempts join its trace");
  enqueue->add_option("--lock-key", ef->lock_key, "jobs sharing this key never run at once");
  enqueue->add_option("--lock-limit", ef->lock_limit, "with --lock-key: at most N at once")
      ->check(CLI::Range(1, 1000000));
  enqueue->add_option("--depends-on", ef->depends_on, "run after these jobs complete (id,id)");
  enqueue->add_option("--webhook", ef->webhook,
                      "POST a signed notification to this URL when the job completes or is "
                      "dead-lettered");
  enqueue->add_option("--batch-on-complete", ef->batch_on_complete,
                      "enqueue the jobs as one batch; run a job of this kind once all finished "
                      "(prints \"batch ID\" on stderr)");
  enqueue->add_option("--batch-on-failure", ef->batch_on_failure,
                      "as a batch; run a job of this kind instead if any job failed");
  enqueue->add_option("--batch-payload", ef->batch_payload,
                      "the batch callback's payload (JSON object; the counts are added)");
  enqueue->add_option("--workflow", ef->workflow,
                      "enqueue a workflow: a JSON document of named steps (- for standard "
                      "input); prints the workflow id");
  on_parsed(enqueue, ctx, [&ctx, ef, enqueue] {
    if (!ef->workflow.empty()) {
      // A workflow's steps carry their own kinds and options.
      for (const auto* opt : enqueue->get_options()) {
        if (opt->count() == 0 || opt->get_name() == "--workflow") continue;
        std::cerr << "runner enqueue: --workflow takes no " << opt->get_name()
                  << " (each step names its kind, payload and options in the document)\n";
        return kExitUsage;
      }
    }
    return cmd_enqueue(ctx.g, *ef);
  });
}

void register_jobs(CLI::App& app, Context& ctx) {
  auto sf = std::make_shared<IdFlags>();
  auto* status = app.add_subcommand("status", "show one job");
  status->fallthrough();
  status->add_option("id", sf->id, "job id")->required()->check(kJobId);
  status->add_flag("--json", sf->json, "print JSON");
  on_parsed(status, ctx, [&ctx, sf] { return cmd_status(ctx.g, sf->id, sf->json); });

  auto* jobs = app.add_subcommand("jobs", "list jobs");
  jobs->fallthrough();
  jobs->require_subcommand(1);
  auto* jobs_ls = jobs->add_subcommand("ls", "list jobs");
  jobs_ls->fallthrough();
  struct LsFlags {
    std::string state, kind, queue;
    int limit = 100;
    bool json = false;
  };
  auto ls = std::make_shared<LsFlags>();
  jobs_ls
      ->add_option("--state", ls->state,
                   "waiting, scheduled, available, running, retryable, completed, "
                   "discarded or cancelled")
      ->check(CLI::IsMember({"waiting", "scheduled", "available", "running", "retryable",
                             "completed", "discarded", "cancelled"}));
  jobs_ls->add_option("--kind", ls->kind);
  jobs_ls->add_option("--queue", ls->queue);
  jobs_ls->add_option("--limit", ls->limit)->check(CLI::Range(1, 1000000));
  jobs_ls->add_flag("--json", ls->json, "print a JSON array");
  on_parsed(jobs_ls, ctx, [&ctx, ls] {
    JobListParams p;
    if (!ls->state.empty()) p.state = ls->state;
    if (!ls->kind.empty()) p.kind = ls->kind;
    if (!ls->queue.empty()) p.queue = ls->queue;
    p.limit = ls->limit;
    return cmd_jobs_ls(ctx.g, p, ls->json);
  });

  auto jcf = std::make_shared<JobsCancelFlags>();
  auto* jobs_cancel = jobs->add_subcommand(
      "cancel", "cancel the jobs of a queue that are not running (all, or one kind or state)");
  jobs_cancel->fallthrough();
  jobs_cancel->add_option("--queue", jcf->queue, "the queue")->required();
  jobs_cancel->add_option("--kind", jcf->kind, "only jobs of this kind");
  jobs_cancel->add_option("--state", jcf->state,
                          "only jobs in this state: waiting, scheduled, available or retryable");
  jobs_cancel->add_flag("--yes", jcf->yes, "cancel without asking (else: a count, and exit 2)");
  on_parsed(jobs_cancel, ctx, [&ctx, jcf] { return cmd_jobs_cancel(ctx.g, *jcf); });
}

}  // namespace jr::cli
