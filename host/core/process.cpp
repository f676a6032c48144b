#include "process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace jr {

namespace {

// The buffer size sysconf suggests for the *_r lookups, at least 16 KiB (it may say -1).
size_t lookup_buffer_size(int what) {
  long n = sysconf(what);
  return n > 16384 ? static_cast<size_t>(n) : 16384;
}

}  // namespace

std::optional<UserIds> find_user(const std::string& name) {
  std::vector<char> buf(lookup_buffer_size(_SC_GETPW_R_SIZE_MAX));
  struct passwd pwd {};
  struct passwd* pw = nullptr;
  if (getpwnam_r(name.c_str(), &pwd, buf.data(), buf.size(), &pw) != 0 || pw == nullptr) {
    return std::nullopt;
  }
  return UserIds{pw->pw_uid, pw->pw_gid};
}

std::optional<gid_t> find_group(const std::string& name) {
  std::vector<char> buf(lookup_buffer_size(_SC_GETGR_R_SIZE_MAX));
  struct group grp {};
  struct group* g = nullptr;
  if (getgrnam_r(name.c_str(), &grp, buf.data(), buf.size(), &g) != 0 || g == nullptr) {
    return std::nullopt;
  }
  return g->gr_gid;
}

CommandResult run_command(const std::vector<std::string>& argv, const std::string& as_user) {
  CommandResult res;
  if (argv.empty()) return res;
  uid_t uid = 0;
  gid_t gid = 0;
  bool switch_user = !as_user.empty() && geteuid() == 0;
  if (switch_user) {
    auto user = find_user(as_user);
    if (!user) {
      res.output = "no such user '" + as_user + "'";
      return res;
    }
    uid = user->uid;
    gid = user->gid;
  }
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    res.output = std::string("pipe: ") + std::strerror(errno);
    return res;
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    res.output = std::string("fork: ") + std::strerror(errno);
    return res;
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec. It starts with no signal blocked (the
    // worker holds SIGTERM and SIGINT for its sigwait thread; a child must not inherit that).
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (switch_user) {
      if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(126);
    }
    execv(args[0], args.data());
    const char msg[] = "exec failed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
  }
  close(fds[1]);
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) {
      res.output.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    res.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res.exit_code = 128 + WTERMSIG(status);
  }
  return res;
}

}  // namespace jr
