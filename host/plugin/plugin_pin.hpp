// Content pinning of plugin files: "what was checked is what runs". A plugin file is read once
// (bounded size), hashed (SHA-256, OpenSSL EVP) and kept in a sealed memfd; every describe,
// worker start, respawn, listing and in-process load then uses that memfd (through
// /proc/self/fd/N), never the path again, so replacing the file on disk changes nothing.
//
// Ownership: a PinnedFile owns its memfd (closed by the destructor); share it with
// std::shared_ptr<const PinnedFile> (LoadedPlugin::pin). Immutable after pin(): thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace jr {

class PinnedFile {
 public:
  // Largest plugin file accepted (the bytes live in memory for the life of the process).
  static constexpr uint64_t kDefaultMaxBytes = uint64_t{256} << 20;

  // Reads `path` (a regular file, at most `max_bytes`), hashes it and seals the copy. Throws
  // PluginError naming the file and the problem.
  static std::shared_ptr<const PinnedFile> pin(const std::string& path,
                                               uint64_t max_bytes = kDefaultMaxBytes);
  ~PinnedFile();
  PinnedFile(const PinnedFile&) = delete;
  PinnedFile& operator=(const PinnedFile&) = delete;

  const std::string& path() const { return path_; }      // as named by the caller
  const std::string& sha256() const { return sha256_; }  // 64 lowercase hex digits
  uint64_t size() const { return size_; }
  int fd() const { return fd_; }  // the sealed memfd (close-on-exec)
  // "/proc/self/fd/N": opening it opens the pinned bytes (read-only by the seals).
  std::string proc_path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  PinnedFile() = default;
  std::string path_;
  std::string sha256_;
  uint64_t size_ = 0;
  int fd_ = -1;
};

// SHA-256 of `data` as 64 lowercase hex digits (OpenSSL EVP).
std::string sha256_hex(const void* data, size_t len);

// True for 64 hex digits (either case).
bool is_sha256_hex(const std::string& s);

}  // namespace jr
