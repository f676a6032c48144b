// jr-worker: the sandbox worker process. Started by exec from the host (never a bare fork), with
// the IPC socket on fd 3, the shared page (a sealed memfd, closed once mapped) on fd 4, and
// stdout/stderr on pipes the host reads. The host puts it in the plugin's cgroup before it sends
// the Init frame, so it waits for that frame before anything else. It reads Init, confines
// itself (confine.hpp), and only then loads the plugin (which runs its constructors), calls its
// init, sends Hello with the layers applied, and serves Job frames one at a time until Shutdown
// or end of stream.
//
// Threading: the main thread reads frames and runs handle(); plugin threads may call the host
// functions during a job (writes are serialised by a mutex; enqueue replies are read by the
// calling thread under the read mutex).
#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <string>

#include "confine.hpp"
#include "host_api.hpp"
#include "plugin_loader.hpp"
#include "protocol.hpp"
#include "trace_context.hpp"

namespace {

using jr::sandbox::proto::Decoder;
using jr::sandbox::proto::Encoder;
using jr::sandbox::proto::Frame;
using jr::sandbox::proto::FrameReader;
using jr::sandbox::proto::Type;
namespace proto = jr::sandbox::proto;

constexpr int kFd = proto::kWorkerFd;

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

proto::SharedPage* g_shared = nullptr;
std::atomic<uint64_t> g_seq{0};  // seq of the running job; 0 = none
std::atomic<bool> g_oom{false};
uint32_t g_max_frame = proto::kDefaultMaxFrame;
bool g_report_usage = false;  // CPU/RSS in Done frames: only when the policy recycles on them

std::mutex g_write_mu;
Encoder g_enc;  // guarded by g_write_mu

std::mutex g_read_mu;
FrameReader* g_reader = nullptr;  // guarded by g_read_mu
// Replies to host calls, by request number: an enqueue's id, or a parent_results page.
struct Reply {
  int64_t id = -1;
  std::string page;
};
std::map<uint64_t, Reply> g_replies;  // guarded by g_read_mu
// Frames for serve() that arrived while a host call waited for its reply: the host sends the
// next jobs of a batch ahead, so they can sit before the reply in the stream. Bounded by what
// the host sends ahead (proto::kCancelAheadSlots frames, kAheadBytes).
struct Pending {
  Type type{};
  std::string payload;
};
std::deque<Pending> g_pending;  // guarded by g_read_mu
std::atomic<uint64_t> g_next_req{1};

[[noreturn]] void die(int code) { _exit(code); }

// Sends the frame built in g_enc (caller holds g_write_mu).
void send_locked() {
  if (!proto::write_all(kFd, g_enc.finish())) die(3);  // the host is gone
}

void on_alloc_failure() {
  g_oom.store(true, std::memory_order_relaxed);
  throw std::bad_alloc();
}

std::string_view clip(std::string_view s) {
  size_t cap = g_max_frame > 256 ? g_max_frame - 256 : 0;
  return s.size() > cap ? s.substr(0, cap) : s;
}

class WorkerServices final : public jr::HostServices {
 public:
  void job_log(jr_job_ctx*, int level, std::string_view msg) override {
    uint64_t seq = g_seq.load(std::memory_order_relaxed);
    if (seq == 0) return;  // outside a job: nobody to attribute it to
    std::lock_guard<std::mutex> lock(g_write_mu);
    g_enc.begin(Type::log);
    g_enc.put<uint64_t>(seq);
    g_enc.put<int32_t>(level);
    g_enc.str(clip(msg));
    send_locked();
  }
  void job_progress(jr_job_ctx*, double percent, std::string_view step) override {
    uint64_t seq = g_seq.load(std::memory_order_relaxed);
    if (seq == 0) return;
    std::lock_guard<std::mutex> lock(g_write_mu);
    g_enc.begin(Type::progress);
    g_enc.put<uint64_t>(seq);
    g_enc.put<double>(percent);
    g_enc.str(clip(step));
    send_locked();
  }
  int64_t job_enqueue(jr_job_ctx*, std::string_view kind, std::string_view payload,
                      std::string_view options) override {
    uint64_t seq = g_seq.load(std::memory_order_relaxed);
    if (seq == 0) return -1;
    if (kind.size() + payload.size() + options.size() + 64 > g_max_frame) return -1;
    uint64_t req = g_next_req.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(g_write_mu);
      g_enc.begin(Type::enqueue);
      g_enc.put<uint64_t>(seq);
      g_enc.put<uint64_t>(req);
      g_enc.str(kind);
      g_enc.str(payload);
      g_enc.str(options);
      send_locked();
    }
    return await_reply(req).id;
  }
  int job_parent_results(jr_job_ctx*, uint32_t offset, uint32_t, std::string* page) override {
    uint64_t seq = g_seq.load(std::memory_order_relaxed);
    if (seq == 0) return -1;
    uint64_t req = g_next_req.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(g_write_mu);
      g_enc.begin(Type::parents);
      g_enc.put<uint64_t>(seq);
      g_enc.put<uint64_t>(req);
      g_enc.put<uint32_t>(offset);
      send_locked();
    }
    Reply r = await_reply(req);
    if (r.id != 0) return -1;
    *page = std::move(r.page);
    return 0;
  }

 private:
  // Reads frames until the reply to `req` arrived (replies to other threads' requests are kept
  // for them; the next jobs' frames for serve()). Anything else ends the worker.
  static Reply await_reply(uint64_t req) {
    std::lock_guard<std::mutex> lock(g_read_mu);
    for (;;) {
      if (auto it = g_replies.find(req); it != g_replies.end()) {
        Reply r = std::move(it->second);
        g_replies.erase(it);
        return r;
      }
      Frame f;
      if (g_reader->next_blocking(kFd, f) != FrameReader::Result::frame) die(3);
      Decoder d(f.payload);
      uint64_t id = d.get<uint64_t>();
      Reply r;
      if (f.type == Type::enqueue_reply) {
        r.id = d.get<int64_t>();
      } else if (f.type == Type::parents_reply) {
        r.id = d.get<int32_t>();  // the status
        r.page = std::string(d.str());
        if (!d.at_end()) die(4);
      } else if (f.type == Type::job || f.type == Type::idle || f.type == Type::shutdown) {
        if (g_pending.size() >= 2 * proto::kCancelAheadSlots) die(4);
        g_pending.push_back({f.type, std::string(f.payload)});
        continue;
      } else {
        die(4);
      }
      if (!d.ok()) die(4);
      g_replies[id] = std::move(r);
    }
  }
};

WorkerServices g_services;
jr_host_api g_api;

// plugins/exec (issue 22): the exec buffer confine() mapped (the only pathname seccomp lets
// execve take), offered as the extension "jr.exec.v1". Layout shared with plugins/exec.
struct ExecExtension {
  uint32_t struct_size;
  uint32_t reserved;
  char* path;       // copy the program's path here (in the forked child), then execve(path, ...)
  size_t capacity;  // bytes, including the NUL
};
ExecExtension g_exec_ext{sizeof(ExecExtension), 0, nullptr, 0};

const void* api_get_extension(const char* id) {
  if (id != nullptr && std::strcmp(id, "jr.exec.v1") == 0 && g_exec_ext.path != nullptr) {
    return &g_exec_ext;
  }
  // jr.error_kind.v1: validated here, and again by the host; jr.trace.v1: from the Job frame.
  return jr::host_extension(id);
}

// Whether the host asked to stop the job with this seq (running, or waiting behind another).
bool cancel_requested(uint64_t seq) {
  return seq != 0 && (__atomic_load_n(&g_shared->cancel_seq, __ATOMIC_ACQUIRE) == seq ||
                      __atomic_load_n(&g_shared->cancel_ahead[seq % proto::kCancelAheadSlots],
                                      __ATOMIC_ACQUIRE) == seq);
}

int32_t api_is_cancelled(jr_job_ctx*) {
  return cancel_requested(g_seq.load(std::memory_order_relaxed)) ? 1 : 0;
}

void send_hello(const nlohmann::json& hello) {
  std::string text = hello.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(g_write_mu);
  g_enc.begin(Type::hello);
  g_enc.put<uint8_t>(0);  // reserved
  g_enc.str(text);
  send_locked();
}

nlohmann::json describe(const jr::LoadedPlugin& p) {
  nlohmann::json kinds = jr::kinds_json(p);
  return {{"name", p.name},
          {"version", p.version},
          {"abi_minor", p.abi_minor},
          {"kinds", kinds},
          {"manifest", p.manifest},
          {"has_idle", p.has_idle},
          {"has_shutdown", p.desc != nullptr && p.desc->shutdown != nullptr}};
}

void send_done(uint64_t seq, int32_t status, jr_job_ctx& ctx, uint32_t flags) {
  struct rusage ru {};
  if (g_report_usage) getrusage(RUSAGE_SELF, &ru);
  int64_t cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL + ru.ru_utime.tv_usec +
                   ru.ru_stime.tv_usec;
  std::lock_guard<std::mutex> lock(g_write_mu);
  std::lock_guard<std::mutex> ctx_lock(ctx.mu);
  if (g_oom.load(std::memory_order_relaxed)) flags |= proto::kDoneOom;
  std::string_view result;
  std::string_view error = clip(ctx.error);
  uint64_t result_size = ctx.result.size();
  if (ctx.result_refused_size > 0) {  // set_result refused it (bounds::kResultMax)
    flags |= proto::kDoneTooBig;
    status = JR_ERR_RETRYABLE;
    result_size = ctx.result_refused_size;
  } else if (ctx.has_result) {
    if (ctx.result.size() + error.size() + 128 > g_max_frame) {
      // Refuse here rather than send a frame the host must kill us for.
      flags |= proto::kDoneTooBig;
      status = JR_ERR_RETRYABLE;
    } else {
      flags |= proto::kDoneHasResult;
      result = ctx.result;
    }
  }
  g_enc.begin(Type::done);
  g_enc.put<uint64_t>(seq);
  g_enc.put<int32_t>(status);
  g_enc.put<uint32_t>(flags);
  g_enc.put<double>(ctx.snooze_seconds);
  g_enc.put<int64_t>(cpu_us);
  g_enc.put<int64_t>(ru.ru_maxrss);
  g_enc.put<uint64_t>(result_size);
  g_enc.str(result);
  g_enc.str(error);
  g_enc.str(ctx.error_kind);
  send_locked();
}

int serve(jr::LoadedPlugin& p, void* state) {
  jr_job_ctx ctx;
  ctx.services = &g_services;
  std::string kind, queue, payload, traceparent;
  Pending held;
  for (;;) {
    Frame f;
    uint64_t seq = 0;
    jr_job j{};
    Type type;
    {
      std::lock_guard<std::mutex> lock(g_read_mu);
      if (!g_pending.empty()) {  // read while a host call of the last job waited for its reply
        held = std::move(g_pending.front());
        g_pending.pop_front();
        f.type = held.type;
        f.payload = held.payload;
      } else {
        g_reader->set_spin_us(
            static_cast<int>(__atomic_load_n(&g_shared->spin_us, __ATOMIC_RELAXED)));
        FrameReader::Result r = g_reader->next_blocking(kFd, f);
        if (r == FrameReader::Result::eof) return 0;
        if (r != FrameReader::Result::frame) return 3;
      }
      type = f.type;
      Decoder d(f.payload);
      if (type == Type::job) {
        seq = d.get<uint64_t>();
        j.struct_size = sizeof(jr_job);
        j.id = d.get<int64_t>();
        j.attempt = d.get<int32_t>();
        j.max_attempts = d.get<int32_t>();
        // The time it may take from its start (ms, 0 = none): the host cannot know when a job
        // sent ahead starts, so the absolute deadline the plugin sees is set here.
        int64_t budget_ms = d.get<int64_t>();
        j.deadline_ms = budget_ms > 0 ? unix_ms() + budget_ms : 0;
        kind.assign(d.str());
        queue.assign(d.str());
        payload.assign(d.str());
        // jr.trace.v1: kept only when it is a well-formed traceparent (at most 55 bytes).
        std::string_view tp = d.str();
        traceparent.assign(jr::trace::traceparent_refusal(tp).empty() ? tp : std::string_view());
        if (!d.ok()) return 4;
      } else if (type == Type::idle) {
        seq = d.get<uint64_t>();
        if (!d.ok()) return 4;
      } else if (type == Type::shutdown) {
        if (p.desc->shutdown != nullptr) p.desc->shutdown(state);
        return 0;
      } else {
        return 4;
      }
    }
    ctx.job_id = j.id;
    ctx.attempt = j.attempt;
    ctx.kind = kind;
    ctx.traceparent = type == Type::job ? traceparent : std::string();
    {
      std::lock_guard<std::mutex> lock(ctx.mu);
      ctx.has_result = false;
      ctx.result.clear();
      ctx.error.clear();
      ctx.error_kind.clear();
      ctx.snooze_seconds = 0;
      ctx.result_refused_size = 0;
    }
    g_oom.store(false, std::memory_order_relaxed);
    g_seq.store(seq, std::memory_order_release);
    int32_t status;
    uint32_t extra = 0;
    if (type == Type::job && cancel_requested(seq)) {
      // Cancelled (or called back by the host) while its frame waited: it does not start.
      status = JR_CANCELLED;
      extra = proto::kDoneSkipped;
    } else if (type == Type::job) {
      j.kind = kind.c_str();
      j.queue = queue.c_str();
      j.payload = payload.c_str();
      j.payload_len = payload.size();
      status = p.desc->handle(state, &g_api, &ctx, &j);
    } else {
      status = p.has_idle ? p.desc->idle(state, &g_api, &ctx) : 0;
    }
    g_seq.store(0, std::memory_order_release);
    send_done(seq, status, ctx, extra);
  }
}

}  // namespace

// What escapes main (bad_alloc, say) ends the worker by std::terminate, a crash the host
// classifies like any other worker death.
// NOLINTNEXTLINE(bugprone-exception-escape)
int main(int argc, char** argv) {
  // argv: jr-worker --host-pid N. Everything else arrives in the Init frame.
  if (argc < 3 || std::strcmp(argv[1], "--host-pid") != 0) {
    static const char msg[] = "jr-worker: started by the jobrunner host only\n";
    (void)!write(2, msg, sizeof msg - 1);
    return 64;
  }
  pid_t host_pid = static_cast<pid_t>(std::atoll(argv[2]));
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, proto::kSharedFd, 0);
  if (page == MAP_FAILED) return 65;
  g_shared = static_cast<proto::SharedPage*>(page);
  close(proto::kSharedFd);  // the mapping is all we need; the plugin gets no handle on the memfd
  static FrameReader reader(proto::kDefaultMaxFrame);
  reader.set_spin_us(0);  // until the host allows it (SharedPage::spin_us, set per job)
  g_reader = &reader;
  Frame f;
  if (reader.next_blocking(kFd, f) != FrameReader::Result::frame || f.type != Type::init) {
    return 66;
  }
  nlohmann::json init;
  jr::sandbox::ConfineSpec spec;
  try {
    Decoder d(f.payload);
    d.get<uint8_t>();
    init = nlohmann::json::parse(d.str());
    spec.policy = jr::sandbox::make_policy(nlohmann::json::object(), init.at("policy"),
                                           nlohmann::json::object());
    spec.plugin_path = init.at("plugin").get<std::string>();
    spec.plugin_fd = proto::kPluginFd;
    char real[PATH_MAX];
    std::string link = "/proc/self/fd/" + std::to_string(proto::kPluginFd);
    ssize_t n = readlink(link.c_str(), real, sizeof real - 1);
    if (n > 0) spec.plugin_real_path.assign(real, static_cast<size_t>(n));
    spec.scratch_dir = init.value("scratch", "");
    spec.uid = init.value("uid", int64_t{-1});
    spec.gid = init.value("gid", int64_t{-1});
    spec.uid_source = init.value("uid_source", "");
    spec.user_name = init.value("user_name", "");
    for (const auto& dir : init.value("socket_dirs", nlohmann::json::array())) {
      spec.socket_dirs.push_back(dir.get<std::string>());
    }
    spec.host_pid = host_pid;
    for (const auto& s : init.value("simulate_missing", nlohmann::json::array())) {
      spec.simulate_missing.insert(s.get<std::string>());
    }
    g_max_frame = init.value("max_frame", proto::kDefaultMaxFrame);
    g_report_usage = spec.policy.max_rss_mb > 0 || spec.policy.cpu_seconds > 0;
  } catch (const std::exception& e) {
    send_hello({{"ok", false}, {"stage", "init frame"}, {"error", e.what()}});
    return 67;
  }
  jr::sandbox::ConfineReport rep;
  try {
    rep = jr::sandbox::confine(spec);
  } catch (const std::exception& e) {
    send_hello({{"ok", false}, {"stage", "confine"}, {"error", e.what()}});
    return 68;
  }
  if (rep.notify_fd >= 0) {
    // network = "loopback": the host takes the listener, then we close ours, before any plugin
    // code runs (a plugin holding it could answer its own calls).
    {
      std::lock_guard<std::mutex> lock(g_write_mu);
      g_enc.begin(Type::net_guard);
      g_enc.put<uint32_t>(static_cast<uint32_t>(rep.notify_fd));
      send_locked();
    }
    Frame ack;
    if (reader.next_blocking(kFd, ack) != FrameReader::Result::frame ||
        ack.type != Type::net_guard_ack) {
      return 66;
    }
    Decoder d(ack.payload);
    if (d.get<uint8_t>() == 0) {
      rep.warnings.push_back(
          "network: the host cannot supervise loopback connections; every connect fails");
      rep.layers["network"] = "degraded: unsupervised (connect, bind and sends fail with ENOSYS)";
    }
    close(rep.notify_fd);
  }
  nlohmann::json hello = {
      {"ok", true}, {"pid", getpid()}, {"layers", rep.layers}, {"warnings", rep.warnings}};
  std::set_new_handler(&on_alloc_failure);
  if (spec.policy.memory_mb > 0) {
    // RLIMIT_AS counts reserved address space, and glibc reserves 64 MiB for every extra malloc
    // arena (up to 8 per core): a plugin with a few threads would hit a 256 MB limit without
    // using the memory (thread stacks then fail to map). Two arenas keep the limit about memory.
    mallopt(M_ARENA_MAX, 2);
  }
  g_api = *jr::host_api();
  g_api.is_cancelled = &api_is_cancelled;
  g_exec_ext.path = rep.exec_path;
  g_exec_ext.capacity = rep.exec_path_cap;
  g_api.get_extension = &api_get_extension;
  // From here on, plugin code runs (its constructors first).
  jr::LoadedPlugin p;
  try {
    // Through the descriptor the host opened (proto::kPluginFd), named by its real path.
    p = jr::load_plugin("/proc/self/fd/" + std::to_string(proto::kPluginFd), spec.plugin_path);
    close(proto::kPluginFd);  // the mapping keeps the library; the plugin needs no descriptor
  } catch (const std::exception& e) {
    hello["ok"] = false;
    hello["stage"] = "load";
    hello["error"] = e.what();
    send_hello(hello);
    return 69;
  }
  hello["plugin"] = describe(p);
  if (init.value("mode", "serve") == "describe") {
    send_hello(hello);
    return 0;
  }
  std::string cfg = init.value("config", nlohmann::json::object()).dump();
  char err[1024] = {0};
  void* state = nullptr;
  int32_t rc = p.desc->init(&g_api, cfg.c_str(), &state, err, sizeof err);
  if (rc != 0) {
    err[sizeof err - 1] = '\0';
    hello["ok"] = false;
    hello["stage"] = "init";
    hello["error"] = err[0] ? std::string(err) : "init returned code " + std::to_string(rc);
    send_hello(hello);
    return 0;
  }
  send_hello(hello);
  int code = serve(p, state);
  _exit(code);  // skip static destructors: the plugin may have left threads running
}
