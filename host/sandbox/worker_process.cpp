#include "worker_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "log.hpp"
#include "net_guard.hpp"

namespace jr::sandbox {
namespace {

// Runs spawn requests on one thread that lives for the whole process: PR_SET_PDEATHSIG in the
// worker fires when the *thread* that created it exits, so that thread must never exit while
// workers run.
class Spawner {
 public:
  static Spawner& get() {
    static Spawner* s = new Spawner();  // never destroyed: the thread must outlive the workers
    return *s;
  }
  void run(std::function<void()> fn) {
    std::mutex done_mu;
    std::condition_variable done_cv;
    bool done = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back([&] {
        fn();
        std::lock_guard<std::mutex> l(done_mu);
        done = true;
        done_cv.notify_one();
      });
    }
    cv_.notify_one();
    std::unique_lock<std::mutex> l(done_mu);
    done_cv.wait(l, [&] { return done; });
  }

 private:
  Spawner() {
    std::thread([this] {
      for (;;) {
        std::function<void()> fn;
        {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock, [&] { return !queue_.empty(); });
          fn = std::move(queue_.front());
          queue_.pop_front();
        }
        fn();
      }
    }).detach();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
};

std::string errstr(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Raw system calls: glibc 2.36's <sys/pidfd.h> lacks extern "C" for C++ callers.
int sys_pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int sys_pidfd_kill(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

}  // namespace

namespace {

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

void add_hosts(const std::string& list, std::vector<std::string>& out) {
  size_t i = 0;
  while (i <= list.size()) {
    size_t j = list.find(',', i);
    if (j == std::string::npos) j = list.size();
    std::string h = list.substr(i, j - i);
    while (h.size() > 1 && h.back() == '/') h.pop_back();
    if (!h.empty() && h[0] == '/' && h.find("..") == std::string::npos &&
        std::find(out.begin(), out.end(), h) == out.end()) {
      out.push_back(h);
    }
    i = j + 1;
  }
}

}  // namespace

std::vector<std::string> unix_socket_dirs(const nlohmann::json& plugin_config) {
  std::vector<std::string> out;
  if (!plugin_config.is_object()) return out;
  auto it = plugin_config.find("database_url");
  if (it == plugin_config.end() || !it->is_string()) return out;
  std::string url = it->get<std::string>();
  size_t scheme = url.find("://");
  if (scheme != std::string::npos) {
    // postgresql://user:pw@%2Fsocket%2Fdir:5432/db?host=/socket/dir&...
    size_t start = scheme + 3;
    size_t end = url.find_first_of("/?", start);
    std::string authority = url.substr(start, end == std::string::npos ? end : end - start);
    size_t at = authority.rfind('@');
    if (at != std::string::npos) authority = authority.substr(at + 1);
    size_t colon = authority.rfind(':');
    if (colon != std::string::npos) authority = authority.substr(0, colon);
    add_hosts(url_decode(authority), out);
    size_t q = url.find('?');
    while (q != std::string::npos) {
      size_t amp = url.find('&', q + 1);
      std::string kv = url.substr(q + 1, amp == std::string::npos ? amp : amp - q - 1);
      if (kv.rfind("host=", 0) == 0) add_hosts(url_decode(kv.substr(5)), out);
      q = amp;
    }
  } else {
    // key=value: host=/socket/dir dbname=...
    std::istringstream in(url);
    for (std::string kv; in >> kv;) {
      if (kv.rfind("host=", 0) == 0) add_hosts(kv.substr(5), out);
    }
  }
  return out;
}

void remove_stale_scratch_dirs(const std::string& root) {
  static std::mutex mu;
  static std::set<std::string> done;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!done.insert(root).second) return;
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("jr-sandbox-", 0) != 0) continue;
    // ...-<pid>-<n>: the pid is the second field from the end.
    size_t last = name.rfind('-');
    size_t prev =
        last == std::string::npos || last == 0 ? std::string::npos : name.rfind('-', last - 1);
    if (prev == std::string::npos || prev < 11) continue;
    std::string pid = name.substr(prev + 1, last - prev - 1);
    if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    std::filesystem::remove_all(e.path(), rm);
  }
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::unique_ptr<WorkerProcess> WorkerProcess::spawn(const std::string& worker_path,
                                                    const std::string& plugin_path,
                                                    uint32_t max_frame, std::string* err) {
  std::unique_ptr<WorkerProcess> w(new WorkerProcess(max_frame));
  int pfd0 = open(plugin_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (pfd0 < 0) {
    *err = errstr(("open " + plugin_path).c_str());
    return nullptr;
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } plugin_fd{fcntl(pfd0, F_DUPFD_CLOEXEC, 10)};
  close(pfd0);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    *err = errstr("socketpair");
    return nullptr;
  }
  // The child end and the memfd go above the target numbers so no dup2 clobbers the other.
  int child = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
  close(sv[1]);
  w->fd = sv[0];
  // Blocking reads with a timeout (the job loop wakes up to check cancel and deadlines); writes
  // use MSG_DONTWAIT with a deadline (write_all_until), so a worker that stops reading cannot
  // stall the host.
  timeval tick{0, kReadTickMs * 1000};
  setsockopt(w->fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
  // The shared page: sealed at its size once sized, so the worker cannot shrink it under the
  // host's mapping (a SIGBUS in the runner) nor grow it; populated by the host now, so its page
  // is the host's and no later access by the host faults.
  int mfd = memfd_create("jr-shared", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (child < 0 || mfd < 0 || ftruncate(mfd, 4096) != 0 ||
      fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    *err = errstr("memfd");
    if (child >= 0) close(child);
    if (mfd >= 0) close(mfd);
    return nullptr;
  }
  w->memfd_ = fcntl(mfd, F_DUPFD_CLOEXEC, 10);
  close(mfd);
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, w->memfd_, 0);
  if (page == MAP_FAILED) {
    *err = errstr("mmap");
    close(child);
    return nullptr;
  }
  w->shared = static_cast<proto::SharedPage*>(page);
  std::memset(page, 0, 4096);
  // The worker's own stdout and stderr: pipes the host reads (never the host's stderr, whose
  // file and flags a plugin could otherwise truncate and change).
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    *err = errstr("pipe");
    close(child);
    return nullptr;
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    *err = errstr("pipe");
    close(child);
    close(out_pipe[0]);
    close(out_pipe[1]);
    return nullptr;
  }
  struct PipeEnds {
    int fds[4];
    ~PipeEnds() {
      for (int end : fds) {
        if (end >= 0) close(end);
      }
    }
  } pipes{{out_pipe[0], err_pipe[0], fcntl(out_pipe[1], F_DUPFD_CLOEXEC, 10),
           fcntl(err_pipe[1], F_DUPFD_CLOEXEC, 10)}};
  close(out_pipe[1]);
  close(err_pipe[1]);

  std::string host_pid = std::to_string(getpid());
  std::vector<char*> argv = {const_cast<char*>(worker_path.c_str()),
                             const_cast<char*>("--host-pid"), host_pid.data(), nullptr};
#if defined(JR_ADDRESS_SANITIZER)
  // A worker of a sanitizer build (the test suite's): the sandbox forbids what the runtime's
  // extras need (exec of an external symbolizer, LeakSanitizer's thread tracer), and a wild
  // SIGSEGV is left to kill the worker as it does in a release build, so the host classifies it
  // the same way. The instrumented checks still stop the worker with their report.
  char sanitizer_options[] = "ASAN_OPTIONS=handle_segv=0:detect_leaks=0:symbolize=0";
  char* envp[] = {sanitizer_options, nullptr};
#else
  char* envp[] = {nullptr};
#endif
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipes.fds[2], 1);
  posix_spawn_file_actions_adddup2(&fa, pipes.fds[3], 2);
  posix_spawn_file_actions_adddup2(&fa, child, proto::kWorkerFd);
  posix_spawn_file_actions_adddup2(&fa, w->memfd_, proto::kSharedFd);
  posix_spawn_file_actions_adddup2(&fa, plugin_fd.fd, proto::kPluginFd);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  int rc = 0;
  pid_t pid = -1;
  Spawner::get().run(
      [&] { rc = posix_spawn(&pid, worker_path.c_str(), &fa, &attr, argv.data(), envp); });
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(child);
  if (rc != 0) {
    *err = "cannot start " + worker_path + ": " + std::strerror(rc);
    return nullptr;
  }
  w->pid = pid;
  // The worker holds the write ends now; the host keeps only the read ends.
  std::string label = std::filesystem::path(plugin_path).filename().string();
  w->output = WorkerOutput::attach(pipes.fds[0], pipes.fds[1], label, pid);
  pipes.fds[0] = pipes.fds[1] = -1;
  w->pidfd = sys_pidfd_open(pid);
  if (w->pidfd < 0) {
    *err = errstr("pidfd_open");
    return w;  // the destructor kills and reaps it; the caller sees the error
  }
  fcntl(w->pidfd, F_SETFD, FD_CLOEXEC);
  w->started_ms = proto::steady_ms();
  w->reader.set_spin_us(proto::kSpinUs);
  return w;
}

WorkerProcess::WorkerProcess(uint32_t max_frame) : reader(max_frame) {}

WorkerProcess::~WorkerProcess() {
  if (pid > 0 && !reaped_) {
    kill();
    reap();
  }
  if (fd >= 0) close(fd);
  if (pidfd >= 0) close(pidfd);
  if (shared != nullptr) munmap(shared, 4096);
  if (memfd_ >= 0) close(memfd_);
  if (!scratch.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch, ec);
  }
}

bool WorkerProcess::join_cgroup(PluginCgroup& cg, std::string* err) {
  if (!cg.active()) return true;
  cgroup_leaf = cg.place(pid, err);
  return cgroup_leaf != nullptr;
}

int WorkerProcess::shared_seals() const { return fcntl(memfd_, F_GET_SEALS); }

void WorkerProcess::kill() {
  if (pid <= 0 || reaped_) return;
  killed_ = true;
  if (pidfd >= 0) {
    sys_pidfd_kill(pidfd, SIGKILL);
  } else {
    ::kill(pid, SIGKILL);
  }
}

bool WorkerProcess::wait_exit(int64_t timeout_ms) {
  if (reaped_) return true;
  if (pidfd < 0) return false;
  pollfd p{pidfd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout_ms));
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

int WorkerProcess::reap() {
  if (reaped_ || pid <= 0) return status_;
  int st = 0;
  pid_t r;
  do {
    r = waitpid(pid, &st, 0);
  } while (r < 0 && errno == EINTR);
  // ECHILD: someone else reaped it (SIGCHLD ignored); all we know is that it is gone.
  status_ = r == pid ? st : (SIGKILL & 0x7f);
  reaped_ = true;
  return status_;
}

void WorkerProcess::classify(int status, bool killed_by_us, ErrorKind* kind, std::string* text) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    std::string name = signal_name(sig);
    if (sig == SIGSYS) {
      *kind = ErrorKind::seccomp;
      *text = "worker killed by seccomp (SIGSYS): the plugin made a forbidden system call";
    } else if (sig == SIGKILL && !killed_by_us) {
      *kind = ErrorKind::oom;
      *text = "worker killed by a SIGKILL the host did not send (likely the kernel OOM killer)";
    } else if (sig == SIGXCPU) {
      *kind = ErrorKind::timeout;
      *text = "worker exceeded its CPU time limit (SIGXCPU)";
    } else {
      *kind = ErrorKind::crash;
      *text = "worker crashed with " + name;
    }
  } else if (WIFEXITED(status) && (WEXITSTATUS(status) == 3 || WEXITSTATUS(status) == 4)) {
    // jr-worker's own codes: its IPC channel broke (3) or the host sent garbage (4).
    *kind = ErrorKind::protocol;
    *text = "worker lost its IPC channel (exit code " + std::to_string(WEXITSTATUS(status)) + ")";
  } else if (WIFEXITED(status)) {
    *kind = ErrorKind::crash;
    *text = "worker exited with code " + std::to_string(WEXITSTATUS(status));
  } else {
    *kind = ErrorKind::crash;
    *text = "worker stopped with wait status " + std::to_string(status);
  }
}

bool WorkerProcess::take_net_guard(const proto::Frame& f, const nlohmann::json& init,
                                   int64_t deadline) {
  proto::Decoder d(f.payload);
  auto target = static_cast<int>(d.get<uint32_t>());
  int listener = d.ok() && !net_guard ? dup_from(pidfd, target) : -1;
  std::string plugin = init.value("plugin_name", init.value("plugin", ""));
  if (listener < 0) {
    // Fail closed: the worker drops its listener, and its guarded calls then fail (ENOSYS).
    log::warn("sandbox: cannot supervise a worker's loopback network; its connections will fail",
              {{"plugin", plugin}, {"error", std::strerror(errno)}});
  } else {
    int own_pidfd = fcntl(pidfd, F_DUPFD_CLOEXEC, 0);
    // The job the worker runs when a call is refused (0 between jobs), for the log line.
    std::function<int64_t()> job = output ? output->job_reader() : std::function<int64_t()>();
    net_guard = std::make_unique<NetGuard>(
        listener, own_pidfd, init.value("uid", int64_t{-1}), init.value("gid", int64_t{-1}),
        NetRules::for_worker(init),
        [plugin, p = pid, job](const std::string& why, const std::string& address) {
          nlohmann::json fields = {{"plugin", plugin}, {"pid", p}, {"why", why}};
          if (!address.empty()) fields["address"] = address;
          int64_t id = job ? job() : 0;
          if (id != 0) fields["job_id"] = id;
          log::warn("sandbox: network call refused", fields);
        });
  }
  enc.begin(proto::Type::net_guard_ack);
  enc.put<uint8_t>(listener >= 0 ? 1 : 0);
  return proto::write_all_until(fd, enc.finish(), deadline);
}

nlohmann::json WorkerProcess::handshake(const nlohmann::json& init, int64_t timeout_ms,
                                        ErrorKind* kind, std::string* err,
                                        const std::function<bool()>& abort) {
  std::string text = init.dump();
  enc.begin(proto::Type::init);
  enc.put<uint8_t>(0);
  enc.str(text);
  int64_t deadline = proto::steady_ms() + timeout_ms;
  auto dead = [&](const std::string& when) {
    if (!wait_exit(500)) kill();
    int st = reap();
    classify(st, killed_, kind, err);
    *err += " " + when;
    return nlohmann::json();
  };
  if (!proto::write_all_until(fd, enc.finish(), deadline)) return dead("before it read its setup");
  for (;;) {
    proto::Frame f;
    auto r = reader.parse(f);
    if (r == proto::FrameReader::Result::frame && f.type == proto::Type::net_guard) {
      if (!take_net_guard(f, init, deadline)) return dead("while handing over its network guard");
      continue;
    }
    if (r == proto::FrameReader::Result::frame) {
      proto::Decoder d(f.payload);
      d.get<uint8_t>();
      auto body = d.str();
      nlohmann::json hello = nlohmann::json::parse(body, nullptr, false);
      if (f.type != proto::Type::hello || !d.ok() || hello.is_discarded() || !hello.is_object()) {
        kill();
        reap();
        *kind = ErrorKind::protocol;
        *err = "worker sent an invalid hello frame";
        return nullptr;
      }
      return hello;
    }
    if (r == proto::FrameReader::Result::too_big) {
      kill();
      reap();
      *kind = ErrorKind::protocol;
      *err = "worker sent a frame of " + std::to_string(reader.last_len()) + " bytes";
      return nullptr;
    }
    int64_t left = deadline - proto::steady_ms();
    if (left <= 0) {
      kill();
      reap();
      *kind = ErrorKind::timeout;
      *err =
          "worker did not finish loading the plugin within " + std::to_string(timeout_ms) + " ms";
      return nullptr;
    }
    if (abort && abort()) {
      // Shutdown: a plugin that hangs in its constructor or init must not hold the runner.
      kill();
      reap();
      *kind = ErrorKind::cancelled;
      *err = "the runner is shutting down (the plugin was still loading)";
      return nullptr;
    }
    pollfd p[2] = {{fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    ::poll(p, 2, static_cast<int>(std::min<int64_t>(left, abort ? 100 : 1000)));
    if (p[0].revents != 0) {
      auto fr = reader.fill(fd);
      if (fr == proto::FrameReader::Result::eof) return dead("while loading the plugin");
    } else if (p[1].revents != 0) {
      return dead("while loading the plugin");
    }
  }
}

}  // namespace jr::sandbox
