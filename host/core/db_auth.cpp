#include "db_auth.hpp"

#include <fcntl.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>
#include <vector>

namespace jr::dbauth {
namespace {

std::vector<unsigned char> random_bytes(size_t n) {
  std::vector<unsigned char> out(n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(out.data() + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(r);
  }
  return out;
}

std::string base64(const unsigned char* data, size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  return out;
}

// Escapes ':' and '\' as libpq's password file format wants.
std::string passfile_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// Splits one password file line into its five fields (unescaping); false when malformed.
bool passfile_fields(const std::string& line, std::vector<std::string>* f) {
  f->assign(1, "");
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == '\\' && i + 1 < line.size()) {
      f->back() += line[++i];
    } else if (c == ':' && f->size() < 5) {
      f->emplace_back();
    } else {
      f->back() += c;
    }
  }
  return f->size() == 5;
}

}  // namespace

std::string random_password() {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : random_bytes(24)) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::string scram_verifier(const std::string& password) {
  constexpr int kIterations = 4096;
  std::vector<unsigned char> salt = random_bytes(16);
  unsigned char salted[32];
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), kIterations, EVP_sha256(), sizeof salted,
                        salted) != 1) {
    throw std::runtime_error("PBKDF2 failed while building a SCRAM verifier");
  }
  auto hmac = [&](const char* text, unsigned char* out) {
    unsigned int len = 32;
    if (HMAC(EVP_sha256(), salted, sizeof salted, reinterpret_cast<const unsigned char*>(text),
             std::strlen(text), out, &len) == nullptr ||
        len != 32) {
      throw std::runtime_error("HMAC failed while building a SCRAM verifier");
    }
  };
  unsigned char client_key[32], server_key[32], stored_key[32];
  hmac("Client Key", client_key);
  hmac("Server Key", server_key);
  unsigned int len = 32;
  if (EVP_Digest(client_key, sizeof client_key, stored_key, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed while building a SCRAM verifier");
  }
  return "SCRAM-SHA-256$" + std::to_string(kIterations) + ":" + base64(salt.data(), salt.size()) +
         "$" + base64(stored_key, sizeof stored_key) + ":" + base64(server_key, sizeof server_key);
}

std::optional<std::string> read_passfile(const std::string& path, const std::string& user) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::vector<std::string> f;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    if (passfile_fields(line, &f) && f[3] == user && !f[4].empty()) return f[4];
  }
  return std::nullopt;
}

void write_passfile(const std::string& path, const std::string& user, const std::string& password) {
  std::string tmp = path + ".tmp" + std::to_string(getpid());
  unlink(tmp.c_str());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw std::runtime_error("cannot create the password file " + tmp + ": " +
                             std::strerror(errno));
  }
  std::string text = "# written by jobrunner: the password of the database role '" + user +
                     "'\n*:*:*:" + passfile_escape(user) + ":" + passfile_escape(password) + "\n";
  bool ok = fchmod(fd, 0600) == 0 &&
            write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            fsync(fd) == 0;
  int err = errno;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    unlink(tmp.c_str());
    throw std::runtime_error("cannot write the password file " + path + ": " + std::strerror(err));
  }
}

std::string load_or_create_passfile(const std::string& path, const std::string& user) {
  if (auto pw = read_passfile(path, user)) return *pw;
  std::string pw = random_password();
  write_passfile(path, user, pw);
  return pw;
}

std::string url_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string url_for_role(const std::string& base, const std::string& user,
                         const std::string& password,
                         const std::map<std::string, std::string>& fallback) {
  static const std::set<std::string> kept = {"host",
                                             "hostaddr",
                                             "port",
                                             "connect_timeout",
                                             "sslmode",
                                             "sslrootcert",
                                             "sslcrl",
                                             "sslcrldir",
                                             "sslsni",
                                             "sslcompression",
                                             "gssencmode",
                                             "channel_binding",
                                             "requirepeer",
                                             "target_session_attrs",
                                             "keepalives",
                                             "keepalives_idle",
                                             "keepalives_interval",
                                             "keepalives_count",
                                             "tcp_user_timeout",
                                             "ssl_min_protocol_version",
                                             "ssl_max_protocol_version"};
  auto params = parse_conninfo(base);
  for (const auto& [k, v] : fallback) params.emplace(k, v);  // only where base says nothing
  std::string url = "postgresql:///";
  if (auto it = params.find("dbname"); it != params.end()) url += url_encode(it->second);
  std::string sep = "?";
  auto add = [&](const std::string& k, const std::string& v) {
    url += sep + k + "=" + url_encode(v);
    sep = "&";
  };
  for (const auto& [k, v] : params) {
    if (kept.count(k)) add(k, v);
  }
  add("user", user);
  add("password", password);
  return url;
}

}  // namespace jr::dbauth
