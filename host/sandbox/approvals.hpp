// Approvals: the operator's record that one plugin file (name + SHA-256 of its content) may have
// exactly what it requested (`runner plugins approve FILE`), kept in a JSON file; and the
// built-in approvals of the shipped plugins, generated at build time from the built files'
// SHA-256 (host/sandbox/builtin_approvals.cmake) and compiled into the runner.
//
// File format: {"version": 1, "approvals": [{"name", "sha256", "file", "approved_at", "request"}]}
// where "request" is approvable_request(manifest) at approval time. Written atomically (temp file
// + rename) with mode 0600 (owned by root when root writes it); a file that others may write is
// refused when read.
//
// Plain value types; load/save do file I/O and are not synchronised beyond an flock on save.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace jr::sandbox {

class ApprovalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Approval {
  std::string name;
  std::string sha256;
  std::string file;         // where it was approved from (information only)
  std::string approved_at;  // ISO 8601 UTC
  nlohmann::json request = nlohmann::json::object();
};

class Approvals {
 public:
  // Reads `path`; a missing file is an empty set. Throws ApprovalError when the file is not
  // valid, or when a user other than its owner (or root) may write it.
  static Approvals load(const std::string& path);
  // Writes the set to `path` (0600, parent directories created 0700). Throws ApprovalError.
  void save(const std::string& path) const;
  // load(), `change`, save() under an exclusive flock of `path` + ".lock".
  static void update(const std::string& path, const std::function<void(Approvals&)>& change);

  const Approval* find(const std::string& name, const std::string& sha256) const;
  void add(Approval a);  // replaces an approval of the same (name, sha256)
  // Removes the approvals of `name` (only the one with `sha256` when it is not empty); returns
  // how many were removed.
  int remove(const std::string& name, const std::string& sha256);
  const std::vector<Approval>& all() const { return list_; }

 private:
  std::vector<Approval> list_;
};

// Where approvals live: `approvals_file` when set (config `approvals_file` / RUNNER_APPROVALS),
// else approvals.json in the runner's data dir (`data_dir` when set, else the parent of
// ManagedDb::default_data_dir(): /var/lib/jobrunner as root).
std::string approvals_path(const std::string& approvals_file, const std::string& data_dir);

// A shipped plugin built with this runner.
struct BuiltinApproval {
  const char* file;  // its file name when it was built (information only)
  const char* sha256;
};
// Every built-in approval (generated source; empty when no plugin was built).
const std::vector<BuiltinApproval>& builtin_approvals();
// The built-in approval of this content, or nullptr.
const BuiltinApproval* builtin_approval(const std::string& sha256);

}  // namespace jr::sandbox
