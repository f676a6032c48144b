#include "plugin_pin.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "plugin_loader.hpp"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U  // linux/memfd.h since 6.3: the memfd may be executed (mapped PROT_EXEC)
#endif

namespace jr {
namespace {

struct Digest {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Digest() { EVP_MD_CTX_free(ctx); }
};

std::string hex(const unsigned char* p, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (unsigned i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

int make_memfd(const std::string& label) {
  std::string name = "jr-plugin:" + label.substr(0, 200);
  // MFD_EXEC keeps the memfd mappable PROT_EXEC when vm.memfd_noexec asks for noexec by default;
  // kernels before 6.3 do not know the flag (EINVAL) and never applied noexec.
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL) fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  return fd;
}

}  // namespace

std::string sha256_hex(const void* data, size_t len) {
  Digest d;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (d.ctx == nullptr || EVP_DigestInit_ex(d.ctx, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(d.ctx, data, len) != 1 || EVP_DigestFinal_ex(d.ctx, md, &n) != 1) {
    throw std::runtime_error("SHA-256 (OpenSSL EVP) failed");
  }
  return hex(md, n);
}

bool is_sha256_hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::shared_ptr<const PinnedFile> PinnedFile::pin(const std::string& path, uint64_t max_bytes) {
  auto fail = [&](const std::string& why) { return PluginError("plugin " + path + ": " + why); };
  // O_NONBLOCK: opening a FIFO planted in the plugin directory must not block start-up.
  int in = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (in < 0 && errno == ENOENT) throw fail("file not found");
  if (in < 0) throw fail(std::string("cannot open: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() {
      if (fd >= 0) close(fd);
    }
  } in_closer{in};
  struct stat st {};
  if (fstat(in, &st) != 0) throw fail(std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw fail("not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    throw fail("file of " + std::to_string(st.st_size) + " bytes is larger than the " +
               std::to_string(max_bytes) + " bytes a plugin may have");
  }
  std::shared_ptr<PinnedFile> pf(new PinnedFile());
  pf->path_ = path;
  pf->fd_ = make_memfd(std::filesystem::path(path).filename().string());
  if (pf->fd_ < 0) throw fail(std::string("memfd_create: ") + std::strerror(errno));
  Digest d;
  if (d.ctx == nullptr || EVP_DigestInit_ex(d.ctx, EVP_sha256(), nullptr) != 1) {
    throw fail("SHA-256 (OpenSSL EVP) is unavailable");
  }
  // Read until end of file, whatever stat said: what is hashed is exactly what is kept.
  std::vector<char> buf(1 << 16);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(in, buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) throw fail(std::string("read: ") + std::strerror(errno));
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    if (total > max_bytes) {
      throw fail("file grew past the " + std::to_string(max_bytes) +
                 " bytes a plugin may have while it was read");
    }
    if (EVP_DigestUpdate(d.ctx, buf.data(), static_cast<size_t>(n)) != 1) {
      throw fail("SHA-256 (OpenSSL EVP) failed");
    }
    if (!write_all(pf->fd_, buf.data(), static_cast<size_t>(n))) {
      throw fail(std::string("cannot copy into memory: ") + std::strerror(errno));
    }
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (EVP_DigestFinal_ex(d.ctx, md, &mdlen) != 1) throw fail("SHA-256 (OpenSSL EVP) failed");
  pf->sha256_ = hex(md, mdlen);
  pf->size_ = total;
  // Sealed: nobody (not this process, not a worker holding the fd) can change, grow, shrink
  // or unseal it.
  if (fcntl(pf->fd_, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    throw fail(std::string("cannot seal the in-memory copy: ") + std::strerror(errno));
  }
  return pf;
}

PinnedFile::~PinnedFile() {
  if (fd_ >= 0) close(fd_);
}

}  // namespace jr
