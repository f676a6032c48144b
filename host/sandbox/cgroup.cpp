#include "cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "util.hpp"

namespace jr::sandbox {
namespace {

std::string read_file(const std::string& path, bool* ok = nullptr) {
  std::ifstream in(path);
  if (ok != nullptr) *ok = static_cast<bool>(in);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `value` to a cgroup control file; false with errno set on failure.
bool write_file(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = write(fd, value.data(), value.size());
  int saved = errno;
  close(fd);
  errno = saved;
  return n == static_cast<ssize_t>(value.size());
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// `path` (a cgroup path of this process) under a mount whose root is `root`: the directory.
bool join_mount(const CgroupMount& m, const std::string& path, std::string* dir) {
  if (m.root == "/") {
    *dir = m.mountpoint + (path == "/" ? "" : path);
    return true;
  }
  if (path.compare(0, m.root.size(), m.root) != 0 ||
      (path.size() > m.root.size() && path[m.root.size()] != '/')) {
    return false;  // our cgroup is not visible under this mount
  }
  *dir = m.mountpoint + path.substr(m.root.size());
  return true;
}

std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") != 0 &&
        std::strcmp(e->d_name, "..") != 0) {
      out.push_back(dir + "/" + e->d_name);
    }
  }
  closedir(d);
  return out;
}

std::vector<pid_t> procs_of(const std::string& dir) {
  std::vector<pid_t> out;
  std::istringstream in(read_file(dir + "/cgroup.procs"));
  for (long p; in >> p;) out.push_back(static_cast<pid_t>(p));
  return out;
}

// Every process in `dir` and below.
void procs_below(const std::string& dir, std::vector<pid_t>& out) {
  for (pid_t p : procs_of(dir)) out.push_back(p);
  for (const auto& s : subdirs(dir)) procs_below(s, out);
}

// Removes `dir` and its sub-cgroups (deepest first), retrying briefly while tasks that were just
// killed finish leaving them.
void remove_tree(const std::string& dir, int tries = 50) {
  for (const auto& s : subdirs(dir)) remove_tree(s, tries);
  for (int i = 0; i < tries; ++i) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void kill_below(const std::string& dir) {
  std::vector<pid_t> ps;
  procs_below(dir, ps);
  for (pid_t p : ps) ::kill(p, SIGKILL);
}

struct System {
  bool v2 = false;
  std::string v2_base;
  bool v2_cpu = false;
  std::string v1_memory, v1_pids, v1_cpu, v1_freezer;
  std::string reason;  // why no cgroup can be used ("" when one can)
};

std::string v2_setup(const std::vector<CgroupMount>& mounts, const std::string& own, System& s) {
  const CgroupMount* m = nullptr;
  std::string dir;
  for (const auto& c : mounts) {
    if (c.fstype == "cgroup2" && join_mount(c, own, &dir)) {
      m = &c;
      break;
    }
  }
  if (m == nullptr) return "no cgroup2 hierarchy holds this process";
  auto ctl = words(read_file(dir + "/cgroup.controllers"));
  if (!has(ctl, "memory") || !has(ctl, "pids")) {
    std::string list;
    for (const auto& c : ctl) list += (list.empty() ? "" : " ") + c;
    return "cgroup v2 at " + m->mountpoint +
           ": the memory and pids controllers are not available " + "in " + dir +
           " (available: " + (list.empty() ? "none" : list) + ")";
  }
  bool cpu = has(ctl, "cpu");
  std::string want = cpu ? "+memory +pids +cpu" : "+memory +pids";
  auto sub = words(read_file(dir + "/cgroup.subtree_control"));
  bool enabled = has(sub, "memory") && has(sub, "pids") && (!cpu || has(sub, "cpu"));
  if (!enabled && !write_file(dir + "/cgroup.subtree_control", want)) {
    if (errno != EBUSY) return errno_message("cgroup v2: cannot enable controllers in " + dir);
    // "No internal processes": the controllers can only be enabled for sub-cgroups once this
    // cgroup holds no process. If the runner is alone in it (a systemd service with
    // Delegate=yes), it moves itself to a leaf of its own.
    auto procs = procs_of(dir);
    if (procs.size() != 1 || procs[0] != getpid()) {
      return "cgroup v2: " + dir +
             " holds other processes, so controllers cannot be enabled for sub-cgroups (run the "
             "runner in a cgroup of its own, e.g. a systemd service with Delegate=yes)";
    }
    std::string leaf = dir + "/jr-host";
    if (mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) {
      return errno_message("cgroup v2: mkdir " + leaf);
    }
    if (!write_file(leaf + "/cgroup.procs", "0")) {
      return errno_message("cgroup v2: cannot move the runner to " + leaf);
    }
    if (!write_file(dir + "/cgroup.subtree_control", want)) {
      return errno_message("cgroup v2: cannot enable controllers in " + dir);
    }
  }
  s.v2 = true;
  s.v2_base = dir;
  s.v2_cpu = cpu;
  return "";
}

std::string v1_setup(const std::vector<CgroupMount>& mounts,
                     const std::vector<std::pair<std::vector<std::string>, std::string>>& own,
                     System& s) {
  auto base = [&](const std::string& ctl) -> std::string {
    for (const auto& [ctls, path] : own) {
      if (!has(ctls, ctl)) continue;
      for (const auto& m : mounts) {
        std::string dir;
        if (m.fstype == "cgroup" && has(m.controllers, ctl) && join_mount(m, path, &dir) &&
            access(dir.c_str(), W_OK) == 0) {
          return dir;
        }
      }
    }
    return "";
  };
  s.v1_memory = base("memory");
  s.v1_pids = base("pids");
  s.v1_cpu = base("cpu");
  s.v1_freezer = base("freezer");
  if (s.v1_memory.empty() && s.v1_pids.empty()) {
    return "no writable cgroup v1 memory or pids hierarchy";
  }
  return "";
}

// "jr-<pid namespace inode>-": the prefix of this process' cgroups (pids are only meaningful in
// the pid namespace that named them; a hierarchy may be shared by several).
const std::string& name_prefix() {
  static const std::string p = [] {
    struct stat st {};
    std::string ns = stat("/proc/self/ns/pid", &st) == 0 ? std::to_string(st.st_ino) : "0";
    return "jr-" + ns + "-";
  }();
  return p;
}

// Empties and removes the cgroups of runners that are gone: `jr-<pidns>-<pid>-...` (our pid
// namespace) with a dead pid.
void remove_stale(const std::string& base) {
  if (base.empty()) return;
  const std::string& prefix = name_prefix();
  for (const auto& dir : subdirs(base)) {
    std::string name = dir.substr(dir.rfind('/') + 1);
    if (name.rfind(prefix, 0) != 0) continue;
    size_t dash = name.find('-', prefix.size());
    if (dash == std::string::npos) continue;
    std::string pid = name.substr(prefix.size(), dash - prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) == 0 || errno != ESRCH) continue;
    kill_below(dir);
    remove_tree(dir, 200);  // up to 2 s: its killed processes are reaped by init
  }
}

const System& sys() {
  static System s = [] {
    System r;
    auto mounts = parse_cgroup_mounts(read_file("/proc/self/mountinfo"));
    auto own = parse_proc_cgroup(read_file("/proc/self/cgroup"));
    std::string own2;
    for (const auto& [ctls, path] : own) {
      if (ctls.empty()) own2 = path;
    }
    std::string why2 = own2.empty() ? "no cgroup v2 membership" : v2_setup(mounts, own2, r);
    if (r.v2) {
      remove_stale(r.v2_base);
      return r;
    }
    std::string why1 = v1_setup(mounts, own, r);
    if (why1.empty()) {
      for (const auto* b : {&r.v1_memory, &r.v1_pids, &r.v1_cpu, &r.v1_freezer}) remove_stale(*b);
      return r;
    }
    r.reason = why2 + "; " + why1;
    return r;
  }();
  return s;
}

std::string sanitise(const std::string& label) {
  std::string out;
  for (char c : label.substr(0, 100)) {
    out +=
        std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ? c : '_';
  }
  return out;
}

std::string limit_text(int64_t mb, const char* unlimited) {
  return mb > 0 ? std::to_string(mb << 20) : unlimited;
}

}  // namespace

std::vector<CgroupMount> parse_cgroup_mounts(const std::string& mountinfo) {
  std::vector<CgroupMount> out;
  std::istringstream in(mountinfo);
  for (std::string line; std::getline(in, line);) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
    auto f = words(line);
    auto sep = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || sep == f.end() || sep + 3 > f.end()) continue;
    CgroupMount m;
    m.fstype = *(sep + 1);
    if (m.fstype != "cgroup" && m.fstype != "cgroup2") continue;
    m.root = f[3];
    m.mountpoint = f[4];
    if (m.mountpoint.find("\\040") != std::string::npos) continue;  // spaces: not ours
    if (m.fstype == "cgroup" && sep + 3 < f.end()) {
      std::istringstream opts(*(sep + 3));
      for (std::string o; std::getline(opts, o, ',');) m.controllers.push_back(o);
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<std::pair<std::vector<std::string>, std::string>> parse_proc_cgroup(
    const std::string& text) {
  std::vector<std::pair<std::vector<std::string>, std::string>> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::vector<std::string> ctls;
    std::istringstream cs(line.substr(a + 1, b - a - 1));
    for (std::string c; std::getline(cs, c, ',');) {
      if (!c.empty()) ctls.push_back(c);
    }
    out.emplace_back(std::move(ctls), line.substr(b + 1));
  }
  return out;
}

CgroupLeaf::~CgroupLeaf() {
  if (owner_) owner_->remove_leaf(dirs_);
}

std::shared_ptr<PluginCgroup> PluginCgroup::create(const std::string& label,
                                                   const CgroupLimits& lim, bool simulate_missing) {
  static std::atomic<uint64_t> counter{0};
  std::shared_ptr<PluginCgroup> cg(new PluginCgroup());
  cg->limits_ = lim;
  auto degrade = [&](const std::string& why) {
    cg->dirs_.clear();
    cg->report_ = "degraded: " + why;
    cg->warning_ = "cgroup: " + why +
                   "; memory is bounded by RLIMIT_AS only (memfd and tmpfs pages are not), threads "
                   "by RLIMIT_NPROC per uid, and the pool is killed worker by worker";
    return cg;
  };
  if (simulate_missing) return degrade("cgroups unavailable (simulated)");
  const System& s = sys();
  if (!s.reason.empty()) return degrade(s.reason);
  std::string name = name_prefix() + std::to_string(getpid()) + "-" + sanitise(label) + "-" +
                     std::to_string(counter.fetch_add(1));
  std::string pids_max = lim.pids_max > 0 ? std::to_string(lim.pids_max) : "max";
  if (s.v2) {
    std::string dir = s.v2_base + "/" + name;
    if (mkdir(dir.c_str(), 0755) != 0) return degrade(errno_message("mkdir " + dir));
    cg->dirs_ = {dir};
    cg->v2_ = true;
    cg->memory_dir_ = dir;
    std::string want = s.v2_cpu ? "+memory +pids +cpu" : "+memory +pids";
    if (!write_file(dir + "/cgroup.subtree_control", want) ||
        !write_file(dir + "/pids.max", pids_max)) {
      std::string why = errno_message("cgroup v2: setting up " + dir);
      remove_tree(dir);
      return degrade(why);
    }
    if (s.v2_cpu) write_file(dir + "/cpu.weight", "100");
    cg->report_ = {{"status", "applied"},
                   {"version", "v2"},
                   {"path", dir},
                   {"memory.max", limit_text(lim.worker_memory_mb, "max") + " per worker"},
                   {"memory.swap.max", "0"},
                   {"pids.max", pids_max + " for the plugin"},
                   {"cpu.weight", s.v2_cpu ? "100" : "unavailable"},
                   {"kill", "cgroup.kill"}};
    return cg;
  }
  nlohmann::json r = {{"status", "applied"}, {"version", "v1"}};
  auto make = [&](const std::string& base, const char* ctl) -> std::string {
    if (base.empty()) {
      r[ctl] = "unavailable";
      return "";
    }
    std::string dir = base + "/" + name;
    if (mkdir(dir.c_str(), 0755) != 0) {
      r[ctl] = "degraded: " + errno_message("mkdir " + dir);
      return "";
    }
    cg->dirs_.push_back(dir);
    return dir;
  };
  std::string pids = make(s.v1_pids, "pids");
  std::string mem = make(s.v1_memory, "memory");
  std::string cpu = make(s.v1_cpu, "cpu");
  std::string frz = make(s.v1_freezer, "freezer");
  if (pids.empty() && mem.empty()) {
    for (const auto& d : cg->dirs_) remove_tree(d);
    return degrade("cgroup v1: " + r.dump());
  }
  if (!pids.empty()) {
    if (write_file(pids + "/pids.max", pids_max)) {
      r["pids"] = {{"path", pids}, {"pids.max", pids_max + " for the plugin"}};
    } else {
      r["pids"] = "degraded: " + errno_message("pids.max");
    }
    cg->v1_plain_.push_back(pids);
  }
  if (!mem.empty()) {
    cg->memory_dir_ = mem;
    r["memory"] = {
        {"path", mem},
        {"memory.limit_in_bytes", limit_text(lim.worker_memory_mb, "-1") + " per worker"}};
  }
  if (!cpu.empty()) {
    cg->v1_plain_.push_back(cpu);
    r["cpu"] = {{"path", cpu}, {"cpu.shares", 1024}};
  }
  if (!frz.empty()) {
    cg->v1_plain_.push_back(frz);
    cg->freezer_dir_ = frz;
  }
  r["kill"] = frz.empty() ? "SIGKILL each process" : "freeze, SIGKILL each process, thaw";
  cg->report_ = r;
  return cg;
}

PluginCgroup::~PluginCgroup() {
  std::lock_guard<std::mutex> lock(mu_);
  if (dirs_.empty()) return;
  kill_all_locked(1000);
  for (const auto& d : dirs_) remove_tree(d);
}

std::unique_ptr<CgroupLeaf> PluginCgroup::place(pid_t pid, std::string* err) {
  std::lock_guard<std::mutex> lock(mu_);
  if (dirs_.empty()) return nullptr;
  std::unique_ptr<CgroupLeaf> leaf(new CgroupLeaf());
  leaf->owner_ = shared_from_this();
  std::string p = std::to_string(pid);
  auto fail = [&](const std::string& what) {
    *err = errno_message(what);
    for (const auto& d : leaf->dirs_) rmdir(d.c_str());
    leaf->dirs_.clear();
    leaf->owner_.reset();
    return nullptr;
  };
  // v1: the process-wide hierarchies first (pids before anything can start a thread).
  for (const auto& d : v1_plain_) {
    if (!write_file(d + "/cgroup.procs", p)) return fail("cgroup: moving the worker to " + d);
  }
  if (!memory_dir_.empty()) {
    std::string dir = memory_dir_ + "/w" + std::to_string(next_leaf_++);
    if (mkdir(dir.c_str(), 0755) != 0) return fail("cgroup: mkdir " + dir);
    leaf->dirs_.push_back(dir);
    if (v2_) {
      if (!write_file(dir + "/memory.max", limit_text(limits_.worker_memory_mb, "max"))) {
        return fail("cgroup: " + dir + "/memory.max");
      }
      write_file(dir + "/memory.swap.max", "0");  // absent without swap accounting: fine
      write_file(dir + "/memory.oom.group", "1");
    } else {
      std::string lim = limit_text(limits_.worker_memory_mb, "-1");
      if (!write_file(dir + "/memory.limit_in_bytes", lim)) {
        return fail("cgroup: " + dir + "/memory.limit_in_bytes");
      }
      write_file(dir + "/memory.memsw.limit_in_bytes", lim);  // absent without swap accounting
    }
    if (!write_file(dir + "/cgroup.procs", p)) return fail("cgroup: moving the worker to " + dir);
  }
  return leaf;
}

void PluginCgroup::remove_leaf(const std::vector<std::string>& dirs) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& d : dirs) rmdir(d.c_str());  // EBUSY: removed with the plugin's cgroup
}

std::vector<pid_t> PluginCgroup::pids_locked() const {
  std::vector<pid_t> out;
  for (const auto& d : dirs_) procs_below(d, out);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<pid_t> PluginCgroup::pids() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pids_locked();
}

int64_t PluginCgroup::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (memory_dir_.empty()) return -1;
  bool ok = false;
  std::string v =
      read_file(memory_dir_ + (v2_ ? "/memory.current" : "/memory.usage_in_bytes"), &ok);
  return ok && !v.empty() ? std::stoll(v) : -1;
}

bool PluginCgroup::kill_all(int64_t timeout_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  return kill_all_locked(timeout_ms);
}

bool PluginCgroup::kill_all_locked(int64_t timeout_ms) {
  if (dirs_.empty()) return true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto wait = [&](const std::function<bool()>& done) {
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  };
  const std::string& top = dirs_.front();
  if (pids_locked().empty()) return true;
  if (v2_) {
    if (!write_file(top + "/cgroup.kill", "1")) {
      // Kernels before 5.14: freeze, kill each, thaw.
      write_file(top + "/cgroup.freeze", "1");
      wait([&] { return read_file(top + "/cgroup.events").find("frozen 1") != std::string::npos; });
      kill_below(top);
      write_file(top + "/cgroup.freeze", "0");
    }
  } else if (!freezer_dir_.empty()) {
    write_file(freezer_dir_ + "/freezer.state", "FROZEN");
    wait([&] { return read_file(freezer_dir_ + "/freezer.state").rfind("FROZEN", 0) == 0; });
    for (const auto& d : dirs_) kill_below(d);
    write_file(freezer_dir_ + "/freezer.state", "THAWED");
  }
  // Without a freezer (and as a backstop), kill until nothing is left.
  return wait([&] {
    auto left = pids_locked();
    for (pid_t p : left) ::kill(p, SIGKILL);
    return left.empty();
  });
}

}  // namespace jr::sandbox
