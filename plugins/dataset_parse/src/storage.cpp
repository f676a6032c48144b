#include "dataset_parse/src/storage.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace dataset_parse {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

class FdStream : public InputStream {
 public:
  FdStream(int fd, uint64_t size, std::string name)
      : fd_(fd), size_(size), name_(std::move(name)) {}
  ~FdStream() override { ::close(fd_); }
  FdStream(const FdStream&) = delete;
  FdStream& operator=(const FdStream&) = delete;

  size_t read(char* buf, size_t cap) override {
    for (;;) {
      ssize_t n = ::read(fd_, buf, cap);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      throw StorageError(StorageError::Code::kIo,
                         "read of '" + name_ + "' failed: " + errno_text(errno));
    }
  }
  uint64_t size() const override { return size_; }

 private:
  int fd_;
  uint64_t size_;
  std::string name_;
};

}  // namespace

void check_relative_path(std::string_view p) {
  auto bad = [&](const std::string& why) {
    throw StorageError(StorageError::Code::kInvalidPath,
                       "invalid storage path '" + std::string(p) + "': " + why);
  };
  if (p.empty()) bad("empty");
  if (p.find('\0') != std::string_view::npos) bad("contains a NUL byte");
  if (p.front() == '/') bad("absolute paths are not allowed");
  if (p.size() > PATH_MAX) bad("too long");
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view comp = p.substr(start, end - start);
    if (comp.empty()) bad("empty path component");
    if (comp == "..") bad("'..' is not allowed");
    if (comp == ".") bad("'.' is not allowed");
    start = end + 1;
  }
}

LocalStorage::LocalStorage(const std::string& root, Resolver resolver) : resolver_(resolver) {
  char buf[PATH_MAX];
  if (::realpath(root.c_str(), buf) == nullptr) {
    int err = errno;
    throw StorageError(err == ENOENT ? StorageError::Code::kNotFound : StorageError::Code::kIo,
                       "storage_root '" + root + "': " + errno_text(err));
  }
  root_ = buf;
  root_fd_ = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0) {
    int err = errno;
    throw StorageError(
        err == ENOTDIR ? StorageError::Code::kNotRegularFile : StorageError::Code::kIo,
        "storage_root '" + root + "' is not a usable directory: " + errno_text(err));
  }
}

LocalStorage::~LocalStorage() {
  if (root_fd_ >= 0) ::close(root_fd_);
}

int LocalStorage::open_openat2(const std::string& rel, bool* unsupported) const {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  // O_NONBLOCK: opening a fifo must not hang; cleared once we know it is a regular file.
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long fd = ::syscall(SYS_openat2, root_fd_, rel.c_str(), &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    int err = errno;
    if (err == EINTR || err == EAGAIN) continue;
    if (err == ENOSYS || (err == EPERM && resolver_ == Resolver::kAuto)) {
      *unsupported = true;
      return -1;
    }
    if (err == EXDEV || err == ELOOP) {
      throw StorageError(StorageError::Code::kInvalidPath,
                         "invalid storage path '" + rel + "': resolves outside the storage root " +
                             root_ + " (" + errno_text(err) + ")");
    }
    if (err == ENOENT || err == ENOTDIR) {
      throw StorageError(StorageError::Code::kNotFound,
                         "file '" + rel + "' not found under " + root_);
    }
    throw StorageError(StorageError::Code::kIo,
                       "cannot open '" + rel + "' under " + root_ + ": " + errno_text(err));
  }
}

int LocalStorage::open_realpath(const std::string& rel) const {
  std::string full = root_ + "/" + rel;
  char buf[PATH_MAX];
  if (::realpath(full.c_str(), buf) == nullptr) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      throw StorageError(StorageError::Code::kNotFound,
                         "file '" + rel + "' not found under " + root_);
    }
    if (err == ELOOP) {
      throw StorageError(StorageError::Code::kInvalidPath,
                         "invalid storage path '" + rel + "': symlink loop");
    }
    throw StorageError(StorageError::Code::kIo, "cannot resolve '" + rel + "': " + errno_text(err));
  }
  std::string canon = buf;
  if (canon.compare(0, root_.size() + 1, root_ + "/") != 0) {
    throw StorageError(StorageError::Code::kInvalidPath,
                       "invalid storage path '" + rel + "': resolves outside the storage root " +
                           root_ + " (to " + canon + ")");
  }
  int fd = ::open(canon.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
  if (fd < 0) {
    int err = errno;
    throw StorageError(err == ENOENT  ? StorageError::Code::kNotFound
                       : err == ELOOP ? StorageError::Code::kInvalidPath
                                      : StorageError::Code::kIo,
                       "cannot open '" + rel + "' under " + root_ + ": " + errno_text(err));
  }
  return fd;
}

std::unique_ptr<InputStream> LocalStorage::open(std::string_view relative_path) const {
  check_relative_path(relative_path);
  std::string rel(relative_path);
  int fd = -1;
  bool unsupported = resolver_ == Resolver::kRealpath;
  if (!unsupported) fd = open_openat2(rel, &unsupported);
  if (unsupported) {
    if (resolver_ == Resolver::kOpenat2) {
      throw StorageError(StorageError::Code::kIo, "openat2 is not available on this kernel");
    }
    fd = open_realpath(rel);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw StorageError(StorageError::Code::kIo, "fstat of '" + rel + "': " + errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw StorageError(StorageError::Code::kNotRegularFile,
                       "'" + rel + "' under " + root_ + " is not a regular file");
  }
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return std::make_unique<FdStream>(fd, static_cast<uint64_t>(st.st_size), rel);
}

}  // namespace dataset_parse
