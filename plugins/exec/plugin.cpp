// plugins/exec (issue 22): runs job handlers written in any language as warm child processes
// speaking JSON lines on their stdin/stdout (docs/exec.md). The kinds and their commands come
// from the runner's configuration ([[plugins.exec.kinds]]), never from this file: its manifest
// only says "config_kinds", and the host grants execve (Landlock execute rights on the commands'
// programs, seccomp's exec gate) to this shipped plugin alone.
//
// One instance per jr-worker process, which runs one job at a time: each worker keeps at most
// one warm child per kind (and at most kMaxWarm children), reused across jobs. Every byte a child
// sends is untrusted: lines are bounded (max_message_kb), nesting-checked before parsing, and a
// child that breaks the protocol, dies or overruns is killed (its process group) and replaced.
// Threading: handle() is called by one thread at a time per worker (the sandbox's contract);
// the state is guarded by a mutex anyway, for an in-process runner with several slots.
#include <fcntl.h>
#include <jobrunner/abi.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

using nlohmann::json;

constexpr size_t kMaxWarm = 8;              // warm children per worker, all kinds together
constexpr int64_t kStartTimeoutMs = 30000;  // from spawn to the child's "ready"
constexpr int kMaxDepth = 64;               // JSON nesting accepted from a child
constexpr int kTickMs = 50;

// Layout of the worker's "jr.exec.v1" extension (host/sandbox/worker_main.cpp).
struct ExecExtension {
  uint32_t struct_size;
  uint32_t reserved;
  char* path;
  size_t capacity;
};

struct KindSpec {
  std::vector<std::string> command;
  std::vector<std::string> env;  // NAME=value
  size_t max_message = 4u << 20;
  int64_t cancel_grace_ms = 600;
};

struct Child {
  pid_t pid = -1;
  int in = -1;   // its stdin (we write)
  int out = -1;  // its stdout (we read)
  std::string rbuf;
  bool ready = false;
  int64_t spawned_ms = 0;
  bool exited = false;
  int status = 0;
};

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string describe_status(int st) {
  if (WIFEXITED(st)) return "exit status " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) {
    const char* n = sigabbrev_np(WTERMSIG(st));
    return std::string("killed by SIG") + (n != nullptr ? n : std::to_string(WTERMSIG(st)));
  }
  return "status " + std::to_string(st);
}

// Nesting depth of a JSON text (brackets outside strings): bounded before nlohmann parses it.
bool depth_ok(const std::string& s) {
  int depth = 0;
  bool in_str = false, esc = false;
  for (char c : s) {
    if (in_str) {
      if (esc) {
        esc = false;
      } else if (c == '\\') {
        esc = true;
      } else if (c == '"') {
        in_str = false;
      }
    } else if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string clip(const std::string& s, size_t n = 200) {
  std::string out = s.size() > n ? s.substr(0, n) + "..." : s;
  for (auto& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  }
  return out;
}

class ExecPlugin {
 public:
  ExecPlugin(const jr_host_api* host, std::map<std::string, KindSpec> kinds)
      : host_(host), kinds_(std::move(kinds)) {
    if (JR_HAS_FIELD(host, jr_host_api, get_extension) && host->get_extension != nullptr) {
      const auto* e = static_cast<const ExecExtension*>(host->get_extension("jr.exec.v1"));
      if (e != nullptr && e->struct_size >= sizeof(ExecExtension)) ext_ = e;
      const auto* k = static_cast<const jr_error_kind_ext*>(host->get_extension(JR_EXT_ERROR_KIND));
      if (k != nullptr && k->struct_size >= sizeof(jr_error_kind_ext)) kind_ext_ = k;
      const auto* t = static_cast<const jr_trace_ext*>(host->get_extension(JR_EXT_TRACE));
      if (t != nullptr && t->struct_size >= sizeof(jr_trace_ext)) trace_ext_ = t;
      const auto* pr =
          static_cast<const jr_parent_results_ext*>(host->get_extension(JR_EXT_PARENT_RESULTS));
      if (pr != nullptr && pr->struct_size >= sizeof(jr_parent_results_ext)) parents_ext_ = pr;
    }
  }
  ~ExecPlugin() {
    for (auto& [k, c] : children_) stop(c, 200);
    reap_orphans();
  }

  int32_t handle(jr_job_ctx* ctx, const jr_job* job);

 private:
  enum class Fail { none, start, crash, protocol, oversize };

  bool spawn(const std::string& kind, const KindSpec& spec, Child& c, std::string* err);
  void stop(Child& c, int64_t grace_ms);
  bool alive(Child& c);
  void reap_orphans();
  bool send(Child& c, const std::string& line, std::string* err);
  // Reads what is available; returns false at EOF or error.
  bool fill(Child& c);
  // Next complete line, or false (oversize sets *over).
  bool next_line(Child& c, const KindSpec& spec, std::string* line, bool* over);

  const jr_host_api* host_;
  std::map<std::string, KindSpec> kinds_;
  const ExecExtension* ext_ = nullptr;
  const jr_error_kind_ext* kind_ext_ = nullptr;  // names failures (handler_crash, ...)
  const jr_trace_ext* trace_ext_ = nullptr;      // the attempt's traceparent, for the handler
  const jr_parent_results_ext* parents_ext_ = nullptr;  // the parent_results message
  void set_kind(jr_job_ctx* ctx, const std::string& kind) {
    if (kind_ext_ != nullptr && !kind.empty()) {
      kind_ext_->set_error_kind(ctx, kind.data(), kind.size());
    }
  }
  std::mutex mu_;
  std::map<std::string, Child> children_;
  std::list<std::string> lru_;  // kinds, most recent first
};

bool ExecPlugin::spawn(const std::string& kind, const KindSpec& spec, Child& c, std::string* err) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    *err = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    *err = std::string("pipe: ") + std::strerror(errno);
    close(in[0]);
    close(in[1]);
    return false;
  }
  // Everything the child needs, built before fork (the child only makes system calls).
  std::vector<char*> argv, envp;
  for (const auto& a : spec.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env;
  for (const char* v : {"HOME", "TMPDIR"}) {
    if (const char* x = getenv(v)) env.push_back(std::string(v) + "=" + x);
  }
  env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
  env.push_back("LANG=C.UTF-8");
  env.push_back("PYTHONUNBUFFERED=1");
  env.push_back("JOBRUNNER_PROTOCOL=1");
  env.push_back("JOBRUNNER_KIND=" + kind);
  for (const auto& e : spec.env) env.push_back(e);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string& prog = spec.command[0];
  char* path = const_cast<char*>(prog.c_str());
  if (ext_ != nullptr && prog.size() + 1 > ext_->capacity) {
    *err = "program path longer than the exec buffer";
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    return false;
  }
  const char* home = getenv("HOME");
  pid_t pid = fork();
  if (pid < 0) {
    *err = std::string("fork: ") + std::strerror(errno);
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    return false;
  }
  if (pid == 0) {
    // The child: its own process group (so the whole handler tree can be stopped), dies with
    // the worker, stdin/stdout the pipes, stderr the worker's (the runner logs it), nothing else.
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);  // the worker ignores it; the handler gets the usual default
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0) _exit(126);
    syscall(SYS_close_range, 3, ~0U, 0);
    if (home != nullptr && chdir(home) != 0) _exit(126);
    if (ext_ != nullptr) {
      // The worker's exec buffer: the one pathname seccomp lets execve take (ExecGate).
      std::memcpy(ext_->path, prog.c_str(), prog.size() + 1);
      path = ext_->path;
    }
    execve(path, argv.data(), envp.data());
    // Only async-signal-safe calls here: say why on stderr (the runner logs it).
    const char* why = strerror(errno);
    const char* parts[] = {"exec: cannot execute ", prog.c_str(), ": ", why, "\n"};
    for (const char* part : parts) {
      if (write(2, part, strlen(part)) < 0) break;
    }
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  c = Child{};
  c.pid = pid;
  c.in = in[1];
  c.out = out[0];
  c.spawned_ms = now_ms();
  fcntl(c.in, F_SETFL, O_NONBLOCK);
  fcntl(c.out, F_SETFL, O_NONBLOCK);
  return true;
}

bool ExecPlugin::alive(Child& c) {
  if (c.pid <= 0 || c.exited) return false;
  int st = 0;
  pid_t r = waitpid(c.pid, &st, WNOHANG);
  if (r == c.pid) {
    c.exited = true;
    c.status = st;
    return false;
  }
  return r == 0;
}

void ExecPlugin::stop(Child& c, int64_t grace_ms) {
  if (c.in >= 0) close(c.in);  // EOF on its stdin: a polite handler exits
  c.in = -1;
  if (c.pid > 0 && !c.exited) {
    int64_t until = now_ms() + grace_ms;
    while (alive(c) && now_ms() < until) usleep(5000);
    if (alive(c)) {
      kill(-c.pid, SIGKILL);  // its process group
      kill(c.pid, SIGKILL);
      int st = 0;
      if (waitpid(c.pid, &st, 0) == c.pid) c.status = st;
      c.exited = true;
    }
  }
  if (c.pid > 0) kill(-c.pid, SIGKILL);  // what is left of its group
  if (c.out >= 0) close(c.out);
  c.out = -1;
  c.pid = -1;
}

void ExecPlugin::reap_orphans() {
  // The worker is a child subreaper: descendants a handler left behind come back to it.
  int st = 0;
  for (int i = 0; i < 1024; ++i) {
    pid_t r = waitpid(-1, &st, WNOHANG);
    if (r <= 0) break;
    for (auto& [k, c] : children_) {
      if (c.pid == r) {
        c.exited = true;
        c.status = st;
      }
    }
  }
}

bool ExecPlugin::send(Child& c, const std::string& line, std::string* err) {
  // Non-blocking, bounded by the caller's loop: a child that does not read its stdin cannot
  // hold the worker. Writes what fits now; the rest waits for POLLOUT (short loop here).
  size_t off = 0;
  int64_t until = now_ms() + 5000;
  while (off < line.size()) {
    ssize_t n = write(c.in, line.data() + off, line.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (now_ms() > until) {
        *err = "handler does not read its stdin";
        return false;
      }
      pollfd p{c.in, POLLOUT, 0};
      poll(&p, 1, kTickMs);
      continue;
    }
    *err = std::string("writing to the handler: ") + std::strerror(errno);
    return false;
  }
  return true;
}

bool ExecPlugin::fill(Child& c) {
  char buf[65536];
  for (int i = 0; i < 64; ++i) {  // at most 4 MiB per call, then the loop checks the clock
    ssize_t n = read(c.out, buf, sizeof buf);
    if (n > 0) {
      c.rbuf.append(buf, static_cast<size_t>(n));
      if (c.rbuf.size() > (16u << 20)) return true;  // next_line reports the oversize
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN;
  }
  return true;
}

bool ExecPlugin::next_line(Child& c, const KindSpec& spec, std::string* line, bool* over) {
  size_t nl = c.rbuf.find('\n');
  if (nl == std::string::npos) {
    if (c.rbuf.size() > spec.max_message) *over = true;
    return false;
  }
  if (nl > spec.max_message) {
    *over = true;
    return false;
  }
  line->assign(c.rbuf, 0, nl);
  c.rbuf.erase(0, nl + 1);
  return true;
}

int32_t ExecPlugin::handle(jr_job_ctx* ctx, const jr_job* job) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string kind = job->kind != nullptr ? job->kind : "";
  auto kit = kinds_.find(kind);
  if (kit == kinds_.end()) {
    std::string m = "exec: no command configured for kind '" + kind + "'";
    host_->set_error(ctx, m.data(), m.size());
    return JR_ERR_PERMANENT;
  }
  const KindSpec& spec = kit->second;
  auto fail = [&](Fail why, const std::string& text) {
    static const char* names[] = {"", "handler_start", "handler_crash", "handler_protocol",
                                  "handler_oversize"};
    std::string m = std::string("exec ") + names[static_cast<int>(why)] + ": " + text;
    host_->set_error(ctx, m.data(), m.size());
    set_kind(ctx, names[static_cast<int>(why)]);
    return JR_ERR_RETRYABLE;
  };
  auto log = [&](int level, const std::string& m) { host_->log(ctx, level, m.data(), m.size()); };

  reap_orphans();
  Child& c = children_[kind];
  lru_.remove(kind);
  lru_.push_front(kind);
  // A warm child that died, or sent bytes between jobs (a protocol breach), is replaced.
  if (c.pid > 0) {
    bool open = fill(c);
    if (!alive(c) || !open || !c.rbuf.empty()) {
      std::string why = !c.rbuf.empty() ? "sent bytes between jobs: '" + clip(c.rbuf) + "'"
                        : c.exited      ? describe_status(c.status)
                                        : "closed its stdout";
      log(JR_LOG_WARN, "exec: replacing the " + kind + " handler (" + why + ")");
      stop(c, 0);
    }
  }
  // At most kMaxWarm children in this worker: stop the least recently used.
  while (children_.size() > kMaxWarm) {
    std::string victim = lru_.back();
    lru_.pop_back();
    stop(children_[victim], 100);
    children_.erase(victim);
  }
  Child& ch = children_[kind];
  std::string err;
  if (ch.pid <= 0 && !spawn(kind, spec, ch, &err)) return fail(Fail::start, err);

  // The job, as one line. The payload is re-serialised (no raw newline can reach the child).
  json payload = json::parse(job->payload, job->payload + job->payload_len, nullptr, false);
  if (payload.is_discarded()) payload = nullptr;
  json msg = {{"type", "job"},
              {"id", job->id},
              {"kind", kind},
              {"queue", job->queue != nullptr ? job->queue : ""},
              {"attempt", job->attempt},
              {"max_attempts", job->max_attempts},
              {"deadline_ms", JR_HAS_FIELD(job, jr_job, deadline_ms) ? job->deadline_ms : 0},
              {"payload", payload}};
  // OpenTelemetry: the attempt's traceparent, so the handler's spans join the job's trace.
  char traceparent[JR_TRACEPARENT_SIZE];
  if (trace_ext_ != nullptr &&
      trace_ext_->get_traceparent(ctx, traceparent, sizeof traceparent) > 0) {
    msg["traceparent"] = traceparent;
  }
  std::string job_line = msg.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  bool job_sent = false;
  int64_t cancel_at = 0;  // when the cancel message went out (0: not yet)
  bool termed = false;
  int64_t start_deadline = ch.spawned_ms + kStartTimeoutMs;

  auto kill_child = [&](int64_t grace) { stop(ch, grace); };
  if (ch.ready) {  // a warm child: the job goes out now (a new one gets it after "ready")
    if (!send(ch, job_line, &err)) {
      kill_child(0);
      return fail(Fail::crash, err);
    }
    job_sent = true;
  }
  for (;;) {
    // Cancellation and deadline: a message, then SIGTERM, then SIGKILL, all within the host's
    // kill grace (1 s), so this worker returns and stays warm.
    if (host_->is_cancelled(ctx) == 1) {
      int64_t t = now_ms();
      if (cancel_at == 0) {
        cancel_at = t;
        if (job_sent && ch.ready) {
          std::string e2;
          send(ch, "{\"type\":\"cancel\"}\n", &e2);
        }
      }
      if (!termed && (t - cancel_at >= spec.cancel_grace_ms / 2 || !job_sent)) {
        termed = true;
        if (ch.pid > 0) kill(ch.pid, SIGTERM);
      }
      if (t - cancel_at >= spec.cancel_grace_ms || (!job_sent && termed)) {
        kill_child(0);
        log(JR_LOG_WARN, "exec: the " + kind + " handler did not stop on cancel; killed");
        return JR_CANCELLED;
      }
    }
    if (!ch.ready && now_ms() > start_deadline) {
      kill_child(0);
      return fail(Fail::start, "handler sent no ready line within 30 s");
    }
    pollfd p{ch.out, POLLIN, 0};
    int pr = poll(&p, 1, kTickMs);
    if (pr < 0 && errno != EINTR) {
      kill_child(0);
      return fail(Fail::crash, std::string("poll: ") + std::strerror(errno));
    }
    bool open = fill(ch);
    std::string line;
    bool over = false;
    while (next_line(ch, spec, &line, &over)) {
      if (!depth_ok(line)) {
        kill_child(0);
        return fail(Fail::protocol, "message nested deeper than 64 levels");
      }
      json m = json::parse(line, nullptr, false);
      if (m.is_discarded() || !m.is_object() || !m.contains("type") || !m["type"].is_string()) {
        kill_child(0);
        return fail(Fail::protocol, "not a protocol message: '" + clip(line) + "'");
      }
      const std::string type = m["type"].get<std::string>();
      if (!ch.ready) {
        if (type != "ready") {
          kill_child(0);
          return fail(Fail::protocol, "first message is '" + clip(type) + "', not 'ready'");
        }
        ch.ready = true;
        if (!send(ch, job_line, &err)) {
          kill_child(0);
          return fail(Fail::crash, err);
        }
        job_sent = true;
        if (cancel_at != 0) send(ch, "{\"type\":\"cancel\"}\n", &err);
        continue;
      }
      if (!job_sent) {
        kill_child(0);
        return fail(Fail::protocol, "message before the job");
      }
      if (type == "progress") {
        double pct = m.value("percent", -1.0);
        if (!m["percent"].is_number() || !std::isfinite(pct)) continue;
        std::string step = m.contains("step") && m["step"].is_string()
                               ? m["step"].get<std::string>()
                               : std::string();
        host_->progress(ctx, pct, step.empty() ? nullptr : step.c_str());
      } else if (type == "log") {
        std::string level =
            m.contains("level") && m["level"].is_string() ? m["level"].get<std::string>() : "info";
        int lv = level == "debug"   ? JR_LOG_DEBUG
                 : level == "warn"  ? JR_LOG_WARN
                 : level == "error" ? JR_LOG_ERROR
                                    : JR_LOG_INFO;
        if (m.contains("message") && m["message"].is_string()) log(lv, m["message"]);
      } else if (type == "enqueue") {
        json reply = {{"type", "enqueued"}};
        if (m.contains("ref")) reply["ref"] = m["ref"];
        if (!m.contains("kind") || !m["kind"].is_string()) {
          reply["error"] = "enqueue needs a kind";
        } else {
          std::string k = m["kind"].get<std::string>();
          std::string pl = m.contains("payload") ? m["payload"].dump() : "{}";
          std::string opts =
              m.contains("options") && m["options"].is_object() ? m["options"].dump() : "";
          int64_t id = 0;
          int32_t rc = host_->enqueue(ctx, k.c_str(), pl.data(), pl.size(),
                                      opts.empty() ? nullptr : opts.c_str(), &id);
          if (rc == 0) {
            reply["id"] = id;
          } else {
            reply["error"] = "refused by the runner (see its log)";
          }
        }
        if (!send(ch, reply.dump() + "\n", &err)) {
          kill_child(0);
          return fail(Fail::crash, err);
        }
      } else if (type == "parent_results") {
        // A page of the job's parents' results (jr.parent_results.v1), at most 4 MiB: the
        // answer is the runner's, sent to the handler as one line.
        json reply = {{"type", "parent_results"}};
        if (m.contains("ref")) reply["ref"] = m["ref"];
        uint32_t offset = 0;
        if (m.contains("offset") && m["offset"].is_number_unsigned() &&
            m["offset"].get<uint64_t>() <= 1000000) {
          offset = static_cast<uint32_t>(m["offset"].get<uint64_t>());
        }
        std::string page;
        auto receive = [](void* user, const char* text, size_t len) {
          static_cast<std::string*>(user)->assign(text, len);
        };
        if (parents_ext_ == nullptr) {
          reply["error"] = "this runner does not offer parent results";
        } else if (parents_ext_->parent_results(ctx, offset, receive, &page) != 0) {
          reply["error"] = "parent results are not available (see the runner's log)";
        } else {
          json parsed = json::parse(page, nullptr, false);
          if (parsed.is_discarded()) {
            reply["error"] = "parent results are not available";
          } else {
            reply["page"] = std::move(parsed);
          }
        }
        if (!send(ch, reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", &err)) {
          kill_child(0);
          return fail(Fail::crash, err);
        }
      } else if (type == "result" || type == "error" || type == "snooze" || type == "cancelled") {
        if (!ch.rbuf.empty()) {
          kill_child(0);
          return fail(Fail::protocol, "bytes after the job's outcome: '" + clip(ch.rbuf) + "'");
        }
        if (type == "result") {
          if (m.contains("result") && !m["result"].is_null()) {
            std::string r = m["result"].dump(-1, ' ', false, json::error_handler_t::replace);
            host_->set_result(ctx, r.data(), r.size());
          }
          return JR_OK;
        }
        if (type == "snooze") {
          double s =
              m.contains("seconds") && m["seconds"].is_number() ? m["seconds"].get<double>() : 0;
          if (!std::isfinite(s) || s < 0) s = 0;
          host_->snooze(ctx, std::min(s, 86400.0 * 365));
          return JR_SNOOZE;
        }
        if (type == "cancelled") return JR_CANCELLED;
        std::string text = m.contains("message") && m["message"].is_string()
                               ? m["message"].get<std::string>()
                               : "handler failed";
        host_->set_error(ctx, text.data(), text.size());
        // The handler's name for its failure (the Python SDK sends the exception's); the host
        // checks it (a refused one is logged and the kind stays "error").
        if (m.contains("kind") && m["kind"].is_string()) {
          set_kind(ctx, m["kind"].get<std::string>().substr(0, 64));
        }
        bool permanent =
            m.contains("permanent") && m["permanent"].is_boolean() && m["permanent"].get<bool>();
        return permanent ? JR_ERR_PERMANENT : JR_ERR_RETRYABLE;
      } else {
        kill_child(0);
        return fail(Fail::protocol, "unknown message type '" + clip(type) + "'");
      }
    }
    if (over) {
      kill_child(0);
      return fail(Fail::oversize,
                  "a message over " + std::to_string(spec.max_message) + " bytes (max_message_kb)");
    }
    if (!open || !alive(ch)) {
      // Give it a moment to be reaped so the status says what happened.
      for (int i = 0; i < 20 && alive(ch); ++i) usleep(5000);
      std::string st = ch.exited ? describe_status(ch.status) : "closed its stdout";
      kill_child(0);
      if (cancel_at != 0) return JR_CANCELLED;  // we stopped it
      return fail(ch.ready ? Fail::crash : Fail::start,
                  std::string(ch.ready ? "handler exited mid-job ("
                                       : "handler exited before "
                                         "its ready line (") +
                      st + ")");
    }
  }
}

std::string parse_config(const char* config_json, std::map<std::string, KindSpec>* out) {
  json cfg = json::parse(config_json != nullptr ? config_json : "{}", nullptr, false);
  if (!cfg.is_object()) return "config is not a JSON object";
  if (!cfg.contains("kinds")) return "no kinds configured ([[plugins.exec.kinds]])";
  const json& kinds = cfg["kinds"];
  if (!kinds.is_array()) return "kinds must be an array of tables";
  for (const auto& k : kinds) {
    if (!k.is_object() || !k.contains("kind") || !k["kind"].is_string()) {
      return "every kinds entry needs a kind";
    }
    KindSpec s;
    if (!k.contains("command") || !k["command"].is_array() || k["command"].empty()) {
      return "kind " + k["kind"].get<std::string>() + ": command must be a non-empty array";
    }
    for (const auto& a : k["command"]) {
      if (!a.is_string()) return "kind " + k["kind"].get<std::string>() + ": command entries";
      s.command.push_back(a.get<std::string>());
    }
    if (k.contains("env") && k["env"].is_object()) {
      for (const auto& [n, v] : k["env"].items()) {
        if (v.is_string()) s.env.push_back(n + "=" + v.get<std::string>());
      }
    }
    if (k.contains("max_message_kb") && k["max_message_kb"].is_number_integer()) {
      int64_t kb = k["max_message_kb"].get<int64_t>();
      if (kb >= 1 && kb <= 15 * 1024) s.max_message = static_cast<size_t>(kb) << 10;
    }
    if (k.contains("cancel_grace_ms") && k["cancel_grace_ms"].is_number_integer()) {
      int64_t g = k["cancel_grace_ms"].get<int64_t>();
      if (g >= 0 && g <= 900) s.cancel_grace_ms = g;
    }
    (*out)[k["kind"].get<std::string>()] = std::move(s);
  }
  return "";
}

int32_t exec_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                  size_t err_cap) {
  std::map<std::string, KindSpec> kinds;
  std::string e = parse_config(config_json, &kinds);
  if (!e.empty()) {
    snprintf(err, err_cap, "%s", e.c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);  // a handler that closed its stdin: EPIPE, not death
  *state = new ExecPlugin(host, std::move(kinds));
  return 0;
}

int32_t exec_handle(void* state, const jr_host_api*, jr_job_ctx* ctx, const jr_job* job) {
  try {
    return static_cast<ExecPlugin*>(state)->handle(ctx, job);
  } catch (const std::exception&) {
    return JR_ERR_RETRYABLE;
  }
}

void exec_shutdown(void* state) { delete static_cast<ExecPlugin*>(state); }

const char kManifest[] =
    R"({"config_kinds": true, "description": "runs handlers in any language as warm child )"
    R"(processes (JSON lines on stdin/stdout); kinds and commands come from [[plugins.exec.kinds]]"})";

jr_plugin_desc g_desc = [] {
  jr_plugin_desc d{};
  d.struct_size = sizeof(jr_plugin_desc);
  d.abi_major = JR_ABI_MAJOR;
  d.abi_minor = JR_ABI_MINOR;
  d.name = "exec";
#ifdef JR_EXEC_TEST_COPY
  d.version = "1.0.0-test-copy";  // tests/plugins/exec: other bytes than the shipped file
#else
  d.version = "1.0.0";
#endif
  d.kinds = nullptr;
  d.kind_count = 0;
  d.manifest_json = kManifest;
  d.init = &exec_init;
  d.handle = &exec_handle;
  d.shutdown = &exec_shutdown;
  d.idle = nullptr;
  return d;
}();

}  // namespace

extern "C" JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t) { return &g_desc; }
