#include "approvals.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "plugin_pin.hpp"
#include "util.hpp"

namespace fs = std::filesystem;

namespace jr::sandbox {
namespace {

constexpr size_t kMaxApprovalsBytes = 16 << 20;

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

Approvals Approvals::load(const std::string& path) {
  Approvals out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT) return out;
  if (fd < 0) throw ApprovalError(errno_message("approvals file " + path));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) throw ApprovalError(errno_message("approvals file " + path));
  if (!S_ISREG(st.st_mode)) throw ApprovalError("approvals file " + path + " is not a file");
  // Approvals widen sandboxes: only their owner (the operator) may be able to write them.
  if (st.st_uid != 0 && st.st_uid != geteuid()) {
    throw ApprovalError("approvals file " + path + " is owned by uid " + std::to_string(st.st_uid) +
                        ", not by root or this user: refused");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw ApprovalError("approvals file " + path +
                        " is writable by group or others: refused (chmod 600 it)");
  }
  if (static_cast<size_t>(st.st_size) > kMaxApprovalsBytes) {
    throw ApprovalError("approvals file " + path + " is larger than 16 MiB");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("approvals") ||
      !j["approvals"].is_array()) {
    throw ApprovalError("approvals file " + path +
                        " is not valid (expected {\"version\": 1, \"approvals\": [...]})");
  }
  for (const auto& a : j["approvals"]) {
    if (!a.is_object() || !a.contains("name") || !a["name"].is_string() || !a.contains("sha256") ||
        !a["sha256"].is_string() || !is_sha256_hex(a["sha256"].get<std::string>())) {
      throw ApprovalError("approvals file " + path + ": an entry lacks a name or a sha256");
    }
    Approval ap;
    ap.name = a["name"].get<std::string>();
    ap.sha256 = a["sha256"].get<std::string>();
    ap.file = a.value("file", "");
    ap.approved_at = a.value("approved_at", "");
    ap.request = a.value("request", nlohmann::json::object());
    out.list_.push_back(std::move(ap));
  }
  return out;
}

void Approvals::save(const std::string& path) const {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& a : list_) {
    arr.push_back({{"name", a.name},
                   {"sha256", a.sha256},
                   {"file", a.file},
                   {"approved_at", a.approved_at},
                   {"request", a.request}});
  }
  std::string text = nlohmann::json({{"version", 1}, {"approvals", arr}}).dump(2) + "\n";
  fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path() && !fs::exists(p.parent_path(), ec)) {
    fs::create_directories(p.parent_path(), ec);
    if (ec) throw ApprovalError("cannot create " + p.parent_path().string() + ": " + ec.message());
    chmod(p.parent_path().c_str(), 0700);
  }
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw ApprovalError(errno_message("cannot write " + tmp));
  bool ok = fchmod(fd, 0600) == 0 && (geteuid() != 0 || fchown(fd, 0, 0) == 0) &&
            write_all(fd, text) && fsync(fd) == 0;
  int saved = errno;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) saved = errno;
    unlink(tmp.c_str());
    errno = saved;
    throw ApprovalError(errno_message("cannot write approvals file " + path));
  }
}

void Approvals::update(const std::string& path, const std::function<void(Approvals&)>& change) {
  fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path() && !fs::exists(p.parent_path(), ec)) {
    fs::create_directories(p.parent_path(), ec);
    if (ec) throw ApprovalError("cannot create " + p.parent_path().string() + ": " + ec.message());
    chmod(p.parent_path().c_str(), 0700);
  }
  std::string lock_path = path + ".lock";
  int lock = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock < 0) throw ApprovalError(errno_message("cannot open " + lock_path));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{lock};
  while (flock(lock, LOCK_EX) != 0) {
    if (errno != EINTR) throw ApprovalError(errno_message("cannot lock " + lock_path));
  }
  Approvals a = load(path);
  change(a);
  a.save(path);
}

const Approval* Approvals::find(const std::string& name, const std::string& sha256) const {
  for (const auto& a : list_) {
    if (a.name == name && a.sha256 == sha256) return &a;
  }
  return nullptr;
}

void Approvals::add(Approval a) {
  remove(a.name, a.sha256);
  list_.push_back(std::move(a));
}

int Approvals::remove(const std::string& name, const std::string& sha256) {
  int n = 0;
  for (auto it = list_.begin(); it != list_.end();) {
    if (it->name == name && (sha256.empty() || it->sha256 == sha256)) {
      it = list_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

std::string approvals_path(const std::string& approvals_file, const std::string& data_dir) {
  if (!approvals_file.empty()) return approvals_file;
  if (!data_dir.empty()) return data_dir + "/approvals.json";
  return runner_state_dir() + "/approvals.json";
}

const BuiltinApproval* builtin_approval(const std::string& sha256) {
  for (const auto& b : builtin_approvals()) {
    if (sha256 == b.sha256) return &b;
  }
  return nullptr;
}

}  // namespace jr::sandbox
