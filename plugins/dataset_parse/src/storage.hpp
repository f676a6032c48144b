// Where dataset files come from. `Storage` opens a file by a path relative to its root and hands
// back a byte stream; `LocalStorage` is the directory implementation. An object store can be
// added later behind the same interface (open -> stream of bytes, size when known).
//
// Errors are typed (StorageError::Code) so the caller can decide retry vs. give up without
// reading messages: kInvalidPath / kNotRegularFile are bad input, kNotFound and kIo are
// transient from the plugin's point of view.
//
// Threading: a Storage is immutable after construction and may be shared by threads; each
// InputStream belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dataset_parse {

class StorageError : public std::runtime_error {
 public:
  enum class Code {
    kInvalidPath,     // empty, absolute, "..", or resolves outside the root (symlink): permanent
    kNotRegularFile,  // a directory, device, fifo...: permanent
    kNotFound,        // no such file (yet): retryable
    kIo,              // open/read failed for another reason: retryable
  };
  StorageError(Code code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  Code code() const { return code_; }
  bool permanent() const { return code_ == Code::kInvalidPath || code_ == Code::kNotRegularFile; }

 private:
  Code code_;
};

// A sequential byte stream. Owned by the caller; closed on destruction.
class InputStream {
 public:
  virtual ~InputStream() = default;
  // Reads up to `cap` bytes into `buf`; returns 0 at end of stream. Throws StorageError(kIo).
  virtual size_t read(char* buf, size_t cap) = 0;
  // Total size in bytes when known up front, else 0.
  virtual uint64_t size() const = 0;
};

class Storage {
 public:
  virtual ~Storage() = default;
  // Opens `relative_path` for reading. Throws StorageError.
  virtual std::unique_ptr<InputStream> open(std::string_view relative_path) const = 0;
  // For messages: "file:///srv/datasets".
  virtual std::string describe() const = 0;
};

// Checks the lexical shape of a relative storage path: not empty, not absolute, no "." or ".."
// components, no empty components, no NUL. Throws StorageError(kInvalidPath).
void check_relative_path(std::string_view relative_path);

// Files under a local directory. Paths are resolved by the kernel with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS) relative to an fd of the root, so neither ".." nor a symlink (at any
// depth, even one swapped in concurrently) can leave the root; symlinks that stay inside the root
// are followed. On kernels without openat2 (or when a seccomp filter refuses it) it falls back to
// resolving with realpath() and checking the prefix, then opening with O_NOFOLLOW.
class LocalStorage : public Storage {
 public:
  enum class Resolver { kAuto, kOpenat2, kRealpath };
  // Throws StorageError(kNotFound / kNotRegularFile) when `root` is not an existing directory.
  explicit LocalStorage(const std::string& root, Resolver resolver = Resolver::kAuto);
  ~LocalStorage() override;
  LocalStorage(const LocalStorage&) = delete;
  LocalStorage& operator=(const LocalStorage&) = delete;

  std::unique_ptr<InputStream> open(std::string_view relative_path) const override;
  std::string describe() const override { return "file://" + root_; }
  const std::string& root() const { return root_; }

 private:
  int open_openat2(const std::string& rel, bool* unsupported) const;
  int open_realpath(const std::string& rel) const;

  std::string root_;  // canonical absolute path
  int root_fd_ = -1;
  Resolver resolver_;
};

}  // namespace dataset_parse
