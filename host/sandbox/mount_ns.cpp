#include "mount_ns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "util.hpp"

namespace jr::sandbox {
namespace {

std::string fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

struct Entry {
  std::string target;  // absolute path in the new root
  int fd = -1;         // O_PATH of the source
  bool dir = false;
  bool rw = false;
  bool device = false;    // keep device nodes usable (no MS_NODEV)
  bool required = false;  // failing to bind it abandons the minimal root
  std::string kind;       // "system", "readable", "writable", "socket"
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) close(fd_);
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// An O_PATH descriptor of `path` in the tree at `root`, creating what is missing (directories;
// the last component a directory or an empty file). Only creates on the root tmpfs itself
// (`root_dev`): never inside a bind mount of a host directory. Never follows a symlink. -1
// with errno set on failure.
int make_target(int root, dev_t root_dev, const std::string& path, bool dir) {
  auto parts = components(path);
  int cur = fcntl(root, F_DUPFD_CLOEXEC, 0);
  for (size_t i = 0; i < parts.size() && cur >= 0; ++i) {
    const std::string& c = parts[i];
    bool last = i + 1 == parts.size();
    if (c == "." || c == "..") {
      close(cur);
      errno = EINVAL;
      return -1;
    }
    int next = openat(cur, c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT) {
      struct stat st {};
      if (fstat(cur, &st) != 0 || st.st_dev != root_dev) {
        close(cur);
        errno = EXDEV;
        return -1;
      }
      int rc;
      if (!last || dir) {
        rc = mkdirat(cur, c.c_str(), 0755);
      } else {
        rc = openat(cur, c.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (rc >= 0) rc = close(rc);
      }
      if (rc != 0 && errno != EEXIST) {
        int saved = errno;
        close(cur);
        errno = saved;
        return -1;
      }
      next = openat(cur, c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    int saved = errno;
    close(cur);
    if (next < 0) {
      errno = saved;
      return -1;
    }
    struct stat st {};
    fstat(next, &st);
    if (S_ISLNK(st.st_mode) || (!last && !S_ISDIR(st.st_mode))) {
      close(next);
      errno = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
      return -1;
    }
    cur = next;
  }
  return cur;
}

// Sets mount flags on the mount at `fd` (and, if `recursive`, the mounts below it): read-only
// or not, nosuid, nodev unless a device. mount_setattr where the kernel has it (5.12+), else a
// remount of the top mount.
bool set_flags(int fd, bool rw, bool device, bool recursive) {
  struct mount_attr attr {};
  attr.attr_set =
      MOUNT_ATTR_NOSUID | (rw ? 0 : MOUNT_ATTR_RDONLY) | (device ? 0 : MOUNT_ATTR_NODEV);
  unsigned flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
  if (syscall(SYS_mount_setattr, fd, "", flags, &attr, sizeof attr) == 0) return true;
  unsigned long ms =
      MS_REMOUNT | MS_BIND | MS_NOSUID | (rw ? 0 : MS_RDONLY) | (device ? 0 : MS_NODEV);
  return mount(nullptr, fd_path(fd).c_str(), nullptr, ms, nullptr) == 0;
}

// Bind-mounts entry `e` at its target under `root`. Returns "" or the reason.
std::string bind(int root, dev_t root_dev, const Entry& e) {
  Fd target(make_target(root, root_dev, e.target, e.dir));
  if (target.get() < 0) return errno_message("mount point " + e.target);
  if (mount(fd_path(e.fd).c_str(), fd_path(target.get()).c_str(), nullptr, MS_BIND | MS_REC,
            nullptr) != 0) {
    return errno_message("bind " + e.target);
  }
  // The descriptor names the mount point underneath; open the path again to reach the new mount.
  std::string rel = e.target.substr(1);
  Fd top(openat(root, rel.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (top.get() < 0 || !set_flags(top.get(), e.rw, e.device, true)) {
    return errno_message("setting flags on " + e.target);
  }
  return "";
}

std::string pick_staging() {
  for (const char* d : {"/tmp", "/mnt", "/var/tmp", "/run"}) {
    struct stat st {};
    if (lstat(d, &st) == 0 && S_ISDIR(st.st_mode)) return d;
  }
  return "";
}

}  // namespace

bool enter_minimal_root(const RootSpec& spec, nlohmann::json& layers,
                        std::vector<std::string>& warnings) {
  auto degraded = [&](const std::string& why) {
    layers["mount_ns"] = "degraded: " + why;
    warnings.push_back("mount_ns: " + why +
                       "; the worker sees the host's file names (Landlock still limits access)");
    if (!spec.scratch_dir.empty()) {
      layers["scratch"] = "degraded: " + spec.scratch_dir + " is a directory without a size limit";
      warnings.push_back("scratch: no mount namespace, so " + spec.scratch_dir +
                         " has no size limit");
    }
    return false;
  };
  if (spec.simulate_missing) return degraded("mount namespaces unavailable (simulated)");
  if (geteuid() != 0) return degraded("the host does not run as root");

  // 1. A mount namespace of our own (a copy of the host's), nothing propagating back.
  if (unshare(CLONE_NEWNS) != 0) return degraded(errno_message("unshare(CLONE_NEWNS)"));
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return degraded(errno_message("making mounts private"));
  }
  // 2. Every source, opened in it (bind mounts take their source from this namespace) while
  //    the whole tree is still in view.
  std::vector<Entry> entries;
  std::vector<std::pair<std::string, std::string>> links;  // /lib -> usr/lib
  std::vector<std::unique_ptr<Fd>> keep;
  auto add = [&](const std::string& path, bool rw, const std::string& kind, bool device = false,
                 bool required = false) {
    int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) {
      if (kind != "system") {
        warnings.push_back("mount_ns: " + kind + " path " + path +
                           " not mounted: " + std::strerror(errno));
      }
      return;
    }
    keep.push_back(std::make_unique<Fd>(fd));
    struct stat st {};
    fstat(fd, &st);
    entries.push_back({path, fd, S_ISDIR(st.st_mode), rw, device, required, kind});
  };
  add("/usr", false, "system", false, true);
  for (const char* l : {"/lib", "/lib64", "/lib32", "/libx32"}) {
    struct stat st {};
    if (lstat(l, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlink(l, buf, sizeof buf - 1);
      if (n > 0) links.emplace_back(l + 1, std::string(buf, static_cast<size_t>(n)));
    } else {
      add(l, false, "system", false, true);
    }
  }
  std::vector<std::string> etc = {"/etc/ld.so.cache", "/etc/localtime", "/etc/ssl"};
  if (spec.network) {
    for (const char* p : {"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf",
                          "/etc/host.conf", "/etc/services", "/etc/protocols"}) {
      etc.push_back(p);
    }
  }
  for (const auto& p : etc) add(p, false, "system");
  add("/dev/null", true, "system", true, true);
  for (const char* d : {"/dev/zero", "/dev/random", "/dev/urandom"}) add(d, false, "system", true);
  add("/sys/devices/system/cpu", false, "system");
  nlohmann::json ro = nlohmann::json::array(), rw = nlohmann::json::array(),
                 sockets = nlohmann::json::array();
  for (const auto& p : spec.readable) add(p, false, "readable");
  for (const auto& p : spec.writable) add(p, true, "writable");
  for (const auto& p : spec.socket_dirs) add(p, false, "socket");
  // Parents before children (a grant inside /usr goes on top of the /usr mount).
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.target < b.target; });

  // 3. The new root: a small tmpfs, mounted over a directory of the old tree (in this namespace
  //    only; the sources are already open).
  std::string staging = pick_staging();
  if (staging.empty()) return degraded("no directory to build the new root on");
  if (mount("jr-root", staging.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
            "size=1m,nr_inodes=4096,mode=0755") != 0) {
    return degraded(errno_message("mounting the root tmpfs"));
  }
  auto abandon = [&](const std::string& why) {
    umount2(staging.c_str(), MNT_DETACH);
    return degraded(why);
  };
  Fd root(open(staging.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  struct stat root_st {};
  if (root.get() < 0 || fstat(root.get(), &root_st) != 0)
    return abandon(errno_message("root tmpfs"));
  dev_t dev = root_st.st_dev;

  for (const auto& [name, target] : links) {
    if (symlinkat(target.c_str(), root.get(), name.c_str()) != 0) {
      return abandon(errno_message("symlink /" + name));
    }
  }
  for (const auto& e : entries) {
    std::string err = bind(root.get(), dev, e);
    if (err.empty()) {
      if (e.kind != "system") (e.kind == "socket" ? sockets : e.rw ? rw : ro).push_back(e.target);
      continue;
    }
    if (e.required) return abandon(err);
    if (e.kind != "system") warnings.push_back("mount_ns: " + e.kind + " path not mounted: " + err);
  }
  Fd devdir(make_target(root.get(), dev, "/dev", true));
  if (devdir.get() < 0) return abandon(errno_message("/dev"));
  for (const auto& [name, target] :
       std::vector<std::pair<const char*, const char*>>{{"fd", "/proc/self/fd"},
                                                        {"stdin", "/proc/self/fd/0"},
                                                        {"stdout", "/proc/self/fd/1"},
                                                        {"stderr", "/proc/self/fd/2"}}) {
    if (symlinkat(target, devdir.get(), name) != 0) {
      return abandon(errno_message(std::string("symlink /dev/") + name));
    }
  }
  // Its own /etc/passwd and /etc/group: root, nobody, and the worker's user.
  {
    Fd etcdir(make_target(root.get(), dev, "/etc", true));
    if (etcdir.get() < 0) return abandon(errno_message("/etc"));
    std::string name = spec.user_name.empty() ? "jr-plugin" : spec.user_name;
    std::string home = spec.scratch_dir.empty() ? "/nonexistent" : spec.scratch_dir;
    std::string passwd = "root:x:0:0:root:/root:/usr/sbin/nologin\n";
    std::string group = "root:x:0:\n";
    if (spec.uid > 0 && spec.uid != 65534) {
      passwd += name + ":x:" + std::to_string(spec.uid) + ":" + std::to_string(spec.gid) +
                ":jobrunner plugin:" + home + ":/usr/sbin/nologin\n";
    }
    if (spec.gid > 0 && spec.gid != 65534) {
      group += name + ":x:" + std::to_string(spec.gid) + ":\n";
    }
    passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    group += "nogroup:x:65534:\n";
    for (const auto& [file, text] :
         {std::pair<const char*, const std::string&>{"passwd", passwd}, {"group", group}}) {
      Fd f(openat(etcdir.get(), file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644));
      if (f.get() < 0 ||
          write(f.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        return abandon(errno_message(std::string("/etc/") + file));
      }
    }
  }
  // 4. A procfs of our own: only the processes the worker may see (its uid, ptrace-able).
  std::string proc_mode = "hidepid=invisible,subset=pid";
  {
    Fd proc(make_target(root.get(), dev, "/proc", true));
    if (proc.get() < 0) return abandon(errno_message("mount point /proc"));
    unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount("proc", fd_path(proc.get()).c_str(), "proc", fl, proc_mode.c_str()) != 0) {
      // Kernels before 5.8 have one procfs instance per pid namespace: its options would change
      // the host's /proc too, so none are passed there.
      if (errno != EINVAL || mount("proc", fd_path(proc.get()).c_str(), "proc", fl, nullptr) != 0) {
        return abandon(errno_message("mounting /proc"));
      }
      proc_mode = "every process visible (the kernel has no per-mount hidepid, 5.8+)";
      warnings.push_back("mount_ns: /proc shows every process: " + proc_mode);
    }
  }
  // 5. The scratch area: a tmpfs of scratch_mb owned by the worker's uid.
  nlohmann::json scratch;
  if (!spec.scratch_dir.empty()) {
    Fd sd(make_target(root.get(), dev, spec.scratch_dir, true));
    if (sd.get() < 0) return abandon(errno_message("mount point " + spec.scratch_dir));
    int64_t mb = std::max<int64_t>(spec.scratch_mb, 1);
    std::string opts = "size=" + std::to_string(mb) +
                       "m,nr_inodes=" + std::to_string(std::max<int64_t>(1024, mb * 64)) +
                       ",mode=0700";
    if (spec.uid >= 0) {
      opts += ",uid=" + std::to_string(spec.uid) + ",gid=" + std::to_string(spec.gid);
    }
    if (mount("jr-scratch", fd_path(sd.get()).c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              opts.c_str()) != 0) {
      return abandon(errno_message("mounting the scratch tmpfs"));
    }
    scratch = {{"status", "applied"},
               {"path", spec.scratch_dir},
               {"tmpfs_mb", mb},
               {"note", "its pages count toward the worker's memory cgroup"}};
  }
  // 6. The root itself becomes read-only, then it replaces the old one.
  if (!set_flags(root.get(), false, false, false))
    return abandon(errno_message("making the root read-only"));
  if (fchdir(root.get()) != 0) return abandon(errno_message("chdir to the new root"));
  if (syscall(SYS_pivot_root, ".", ".") != 0) {
    int saved = errno;
    if (chdir("/") != 0) {
    }
    errno = saved;
    return abandon(errno_message("pivot_root"));
  }
  // The old root is stacked on the new one: detach it (from here on, no way back).
  if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) {
    // Half-switched: refuse rather than run with the old tree in view.
    layers["mount_ns"] = "failed: " + errno_message("detaching the old root");
    throw std::runtime_error("mount namespace: " + errno_message("detaching the old root"));
  }
  layers["mount_ns"] = {{"status", "applied"},
                        {"root",
                         "tmpfs (read-only): /usr /lib* /dev/{null,zero,random,urandom} "
                         "/sys/devices/system/cpu, listed /etc files, its own passwd and group"},
                        {"readable", ro},
                        {"writable", rw},
                        {"sockets", sockets},
                        {"proc", proc_mode}};
  if (!spec.scratch_dir.empty()) layers["scratch"] = scratch;
  return true;
}

}  // namespace jr::sandbox
