#include "worker_output.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

namespace jr::sandbox {

// Shared by a worker's two pipes (guarded by the hub's mutex, except `job`).
struct OutputTag {
  std::string plugin;
  pid_t pid = 0;
  std::atomic<int64_t> job{0};
  OutputLimits lim;
  OutputObserver observer;
  double tokens = static_cast<double>(OutputLimits{}.bytes_per_second);
  int64_t refilled_ns = 0;
  uint64_t dropped_lines = 0;  // in the current episode
  uint64_t dropped_bytes = 0;
  int64_t episode_noticed_ns = 0;  // when the episode started or its last notice went out
};

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kDrainMax = 1 << 20;  // at detach, read at most this much more
constexpr int64_t kNoticeEveryNs = 10'000'000'000;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Source {
  int fd = -1;
  bool is_err = false;
  std::shared_ptr<OutputTag> tag;
  std::string partial;      // the current line so far
  bool discarding = false;  // inside the dropped rest of an overlong line
  bool closed = false;      // end of stream seen (removed from epoll)
  bool paused = false;
  int64_t resume_ns = 0;
};

void emit(OutputTag& t, log::Level level, const std::string& msg, const nlohmann::json& fields) {
  log::write(level, msg, fields);
  if (t.observer) t.observer(level, msg, fields);
}

void notice_dropped(OutputTag& t) {
  if (t.dropped_lines == 0 && t.dropped_bytes == 0) return;
  emit(t, log::Level::warn, "plugin output dropped",
       {{"plugin", t.plugin},
        {"pid", t.pid},
        {"dropped_lines", t.dropped_lines},
        {"dropped_bytes", t.dropped_bytes},
        {"limit_bytes_per_second", t.lim.bytes_per_second}});
  t.dropped_lines = t.dropped_bytes = 0;
  t.episode_noticed_ns = now_ns();
}

void refill(OutputTag& t, int64_t now) {
  double rate = static_cast<double>(t.lim.bytes_per_second);
  if (t.refilled_ns != 0) t.tokens += rate * static_cast<double>(now - t.refilled_ns) / 1e9;
  t.tokens = std::min(t.tokens, rate);
  t.refilled_ns = now;
}

// One complete (or cut) line: logged if the budget allows, else counted.
void line(Source& s, std::string_view text, bool truncated) {
  OutputTag& t = *s.tag;
  int64_t now = now_ns();
  refill(t, now);
  double cost = static_cast<double>(text.size() + 1);
  if (t.tokens < cost) {
    if (t.dropped_lines == 0) t.episode_noticed_ns = now;  // an episode starts: notice in 10 s
    t.dropped_lines++;
    t.dropped_bytes += text.size() + 1;
    t.tokens = std::max(t.tokens - cost, -static_cast<double>(t.lim.bytes_per_second));
    if (now - t.episode_noticed_ns >= kNoticeEveryNs) notice_dropped(t);
    return;
  }
  t.tokens -= cost;
  notice_dropped(t);  // an episode of dropping ended: say how much went
  if (text.empty()) return;
  nlohmann::json f = {{"plugin", t.plugin}, {"pid", t.pid}};
  if (int64_t job = t.job.load(std::memory_order_relaxed); job != 0) f["job_id"] = job;
  f["stream"] = s.is_err ? "stderr" : "stdout";
  f["text"] = std::string(text);
  if (truncated) f["truncated"] = true;
  emit(t, s.is_err ? log::Level::warn : log::Level::info, "plugin output", f);
}

// Splits `data` into lines (bounded by line_max).
void consume(Source& s, const char* data, size_t n) {
  const size_t max = s.tag->lim.line_max;
  for (size_t i = 0; i < n;) {
    const char* nl = static_cast<const char*>(memchr(data + i, '\n', n - i));
    size_t end = nl != nullptr ? static_cast<size_t>(nl - data) : n;
    if (s.discarding) {
      OutputTag& t = *s.tag;
      refill(t, now_ns());
      t.tokens = std::max(t.tokens - static_cast<double>(end - i),
                          -static_cast<double>(t.lim.bytes_per_second));
    } else {
      size_t take = std::min(end - i, max - s.partial.size());
      s.partial.append(data + i, take);
      if (s.partial.size() >= max && (take < end - i || nl == nullptr)) {
        line(s, s.partial, true);
        s.partial.clear();
        s.discarding = true;
        i += take;
        continue;
      }
    }
    if (nl == nullptr) break;
    if (!s.discarding) {
      if (!s.partial.empty() && s.partial.back() == '\r') s.partial.pop_back();
      line(s, s.partial, false);
    }
    s.partial.clear();
    s.discarding = false;
    i = end + 1;
  }
}

class Hub {
 public:
  static Hub& get() {
    static Hub* h = new Hub();  // never destroyed: the reader thread lives as long as the process
    return *h;
  }

  uint64_t add(int fd, bool is_err, std::shared_ptr<OutputTag> tag) {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t id = next_id_++;
    Source& s = sources_[id];
    s.fd = fd;
    s.is_err = is_err;
    s.tag = std::move(tag);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) s.closed = true;  // read at detach only
    return id;
  }

  void remove(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sources_.find(id);
    if (it == sources_.end()) return;
    Source& s = it->second;
    // The worker is gone: what it wrote is still in the pipe.
    static char buf[kReadChunk];  // guarded by mu_
    for (size_t total = 0; total < kDrainMax;) {
      ssize_t n = read(s.fd, buf, sizeof buf);
      if (n <= 0) break;
      consume(s, buf, static_cast<size_t>(n));
      total += static_cast<size_t>(n);
    }
    if (!s.partial.empty() && !s.discarding) line(s, s.partial, false);
    if (!s.closed && !s.paused) epoll_ctl(ep_, EPOLL_CTL_DEL, s.fd, nullptr);
    close(s.fd);
    if (s.tag.use_count() <= 2) notice_dropped(*s.tag);  // the worker's last pipe
    sources_.erase(it);
  }

  void set_plugin(OutputTag& t, const std::string& plugin, const OutputLimits& lim,
                  OutputObserver obs) {
    std::lock_guard<std::mutex> lock(mu_);
    t.plugin = plugin;
    t.lim = lim;
    t.lim.line_max = std::max<size_t>(t.lim.line_max, 16);
    t.lim.bytes_per_second = std::max<size_t>(t.lim.bytes_per_second, 1);
    t.tokens = static_cast<double>(t.lim.bytes_per_second);
    t.observer = std::move(obs);
  }

 private:
  Hub() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    std::thread([this] { loop(); }).detach();
  }

  void loop() {
    static char buf[kReadChunk];  // only this thread reads here (under mu_)
    epoll_event evs[64];
    for (;;) {
      int timeout = -1;
      {
        std::lock_guard<std::mutex> lock(mu_);
        int64_t now = now_ns();
        for (auto& [id, s] : sources_) {
          if (!s.paused) continue;
          if (s.resume_ns <= now) {
            s.paused = false;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = id;
            if (epoll_ctl(ep_, EPOLL_CTL_ADD, s.fd, &ev) != 0) s.closed = true;
          } else {
            int ms = static_cast<int>((s.resume_ns - now) / 1'000'000) + 1;
            timeout = timeout < 0 ? ms : std::min(timeout, ms);
          }
        }
      }
      int n = epoll_wait(ep_, evs, 64, timeout);
      if (n < 0) {
        if (errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      for (int i = 0; i < n; ++i) {
        // A copy: epoll_event is packed on x86-64, so its u64 is misaligned for a reference.
        const uint64_t key = evs[i].data.u64;
        auto it = sources_.find(key);
        if (it == sources_.end()) continue;  // removed meanwhile
        Source& s = it->second;
        if (s.closed || s.paused) continue;
        ssize_t r = read(s.fd, buf, sizeof buf);
        if (r > 0) {
          consume(s, buf, static_cast<size_t>(r));
          OutputTag& t = *s.tag;
          if (t.tokens <= 0) {
            // Over budget: leave it unread for as long as refilling a line's worth takes.
            double need = static_cast<double>(t.lim.line_max) - t.tokens;
            int64_t wait_ns = static_cast<int64_t>(need * 1e9 / t.lim.bytes_per_second);
            s.paused = true;
            s.resume_ns = now_ns() + std::clamp<int64_t>(wait_ns, 50'000'000, 1'000'000'000);
            // Out of the epoll set (not just no events: a hang-up would still be reported).
            epoll_ctl(ep_, EPOLL_CTL_DEL, s.fd, nullptr);
          }
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          if (!s.partial.empty() && !s.discarding) line(s, s.partial, false);
          s.partial.clear();
          s.closed = true;
          epoll_ctl(ep_, EPOLL_CTL_DEL, s.fd, nullptr);
        }
      }
    }
  }

  int ep_ = -1;
  std::mutex mu_;
  std::map<uint64_t, Source> sources_;
  uint64_t next_id_ = 1;
};

}  // namespace

std::unique_ptr<WorkerOutput> WorkerOutput::attach(int out_fd, int err_fd,
                                                   const std::string& plugin, pid_t pid) {
  std::unique_ptr<WorkerOutput> w(new WorkerOutput());
  w->tag_ = std::make_shared<OutputTag>();
  w->tag_->plugin = plugin;
  w->tag_->pid = pid;
  for (int fd : {out_fd, err_fd}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  w->ids_[0] = Hub::get().add(out_fd, false, w->tag_);
  w->ids_[1] = Hub::get().add(err_fd, true, w->tag_);
  return w;
}

// remove() drains the pipe and logs its last lines; it throws only where logging does (out of
// memory), and ending the runner by std::terminate then is what any such failure does.
// NOLINTNEXTLINE(bugprone-exception-escape)
WorkerOutput::~WorkerOutput() {
  for (uint64_t id : ids_) {
    if (id != 0) Hub::get().remove(id);
  }
}

void WorkerOutput::configure(const std::string& plugin, const OutputLimits& lim,
                             OutputObserver observer) {
  Hub::get().set_plugin(*tag_, plugin, lim, std::move(observer));
}

void WorkerOutput::set_job(int64_t job_id) { tag_->job.store(job_id, std::memory_order_relaxed); }

std::function<int64_t()> WorkerOutput::job_reader() const {
  std::shared_ptr<OutputTag> t = tag_;
  return [t] { return t->job.load(std::memory_order_relaxed); };
}

}  // namespace jr::sandbox
