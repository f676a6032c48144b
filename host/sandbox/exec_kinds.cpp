#include "exec_kinds.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "policy.hpp"
#include "util.hpp"

namespace jr::sandbox {
namespace {

std::string where(size_t i, const std::string& kind) {
  return "[[plugins.<name>.kinds]] entry " + std::to_string(i + 1) +
         (kind.empty() ? "" : " (kind '" + kind + "')");
}

int64_t int_key(const nlohmann::json& e, const char* key, int64_t lo, int64_t hi, int64_t dflt,
                const std::string& at) {
  auto it = e.find(key);
  if (it == e.end()) return dflt;
  if (!it->is_number_integer() || it->get<int64_t>() < lo || it->get<int64_t>() > hi) {
    throw PolicyError(at + ": " + key + " must be an integer between " + std::to_string(lo) +
                      " and " + std::to_string(hi));
  }
  return it->get<int64_t>();
}

// Reads up to `n` bytes at `off` of the file at fd; returns what was read.
std::string read_at(int fd, off_t off, size_t n) {
  std::string buf(n, '\0');
  ssize_t got = pread(fd, buf.data(), n, off);
  buf.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return buf;
}

// PT_INTERP of a 64-bit little-endian ELF file ("" when none or not such a file).
std::string elf_interp(int fd) {
  std::string h = read_at(fd, 0, sizeof(Elf64_Ehdr));
  if (h.size() < sizeof(Elf64_Ehdr) || std::memcmp(h.data(), ELFMAG, SELFMAG) != 0 ||
      h[EI_CLASS] != ELFCLASS64 || h[EI_DATA] != ELFDATA2LSB) {
    return "";
  }
  Elf64_Ehdr eh;
  std::memcpy(&eh, h.data(), sizeof eh);
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256) return "";
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    std::string ph =
        read_at(fd, static_cast<off_t>(eh.e_phoff + i * sizeof(Elf64_Phdr)), sizeof(Elf64_Phdr));
    if (ph.size() < sizeof(Elf64_Phdr)) return "";
    Elf64_Phdr p;
    std::memcpy(&p, ph.data(), sizeof p);
    if (p.p_type != PT_INTERP) continue;
    if (p.p_filesz == 0 || p.p_filesz > 4096) return "";
    std::string s = read_at(fd, static_cast<off_t>(p.p_offset), p.p_filesz);
    auto nul = s.find('\0');
    return nul == std::string::npos ? s : s.substr(0, nul);
  }
  return "";
}

void closure(const std::string& program, int depth, std::vector<std::string>& out) {
  if (program.empty() || program[0] != '/') {
    throw PolicyError("program '" + program + "' is not an absolute path");
  }
  char real[PATH_MAX];
  if (realpath(program.c_str(), real) == nullptr) {
    throw PolicyError("program " + program + ": " + std::strerror(errno));
  }
  int fd = open(real, O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw PolicyError("program " + program + ": " + std::strerror(errno));
  struct stat st {};
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
  std::string head = ok ? read_at(fd, 0, 256) : "";
  std::string interp = ok ? elf_interp(fd) : "";
  close(fd);
  if (!ok) throw PolicyError("program " + program + " is not an executable regular file");
  if (std::find(out.begin(), out.end(), real) == out.end()) out.push_back(real);
  if (head.rfind("#!", 0) == 0) {
    if (depth >= 4) throw PolicyError("program " + program + ": #! interpreters nest too deep");
    std::string line = head.substr(
        2, head.find('\n') == std::string::npos ? std::string::npos : head.find('\n') - 2);
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos) throw PolicyError("program " + program + ": empty #! line");
    size_t e = line.find_first_of(" \t", b);
    closure(line.substr(b, e == std::string::npos ? std::string::npos : e - b), depth + 1, out);
  } else if (!interp.empty()) {
    closure(interp, depth + 1, out);
  }
}

}  // namespace

std::vector<std::string> program_closure(const std::string& program) {
  std::vector<std::string> out;
  closure(program, 0, out);
  return out;
}

std::vector<ExecKind> parse_exec_kinds(const nlohmann::json& section) {
  std::vector<ExecKind> out;
  if (!section.is_object() || !section.contains("kinds")) return out;
  const auto& arr = section["kinds"];
  if (!arr.is_array())
    throw PolicyError("kinds must be an array of tables ([[plugins.<name>.kinds]])");
  if (arr.size() > 1024) throw PolicyError("kinds: more than 1024 entries");
  std::set<std::string> seen;
  static const std::set<std::string> known = {"kind",           "command",        "env",
                                              "workers",        "queue",          "timeout_seconds",
                                              "max_attempts",   "retry_schedule", "max_message_kb",
                                              "cancel_grace_ms"};
  for (size_t i = 0; i < arr.size(); ++i) {
    const auto& e = arr[i];
    if (!e.is_object()) throw PolicyError(where(i, "") + " is not a table");
    ExecKind k;
    auto kit = e.find("kind");
    if (kit == e.end() || !kit->is_string() || !valid_plugin_name(kit->get<std::string>())) {
      throw PolicyError(where(i, "") + ": kind must be 1-128 characters of [A-Za-z0-9_.:-]");
    }
    k.info.kind = kit->get<std::string>();
    std::string at = where(i, k.info.kind);
    for (const auto& [key, v] : e.items()) {
      (void)v;
      if (!known.count(key)) throw PolicyError(at + ": unknown key '" + key + "'");
    }
    if (!seen.insert(k.info.kind).second) throw PolicyError(at + ": kind declared twice");
    auto cit = e.find("command");
    if (cit == e.end() || !cit->is_array() || cit->empty() || cit->size() > 256) {
      throw PolicyError(at + ": command must be a non-empty array of strings (argv)");
    }
    for (const auto& a : *cit) {
      if (!a.is_string() || a.get_ref<const std::string&>().size() > 4096 ||
          a.get_ref<const std::string&>().find('\0') != std::string::npos) {
        throw PolicyError(at + ": command must be an array of strings of at most 4096 bytes");
      }
      k.command.push_back(a.get<std::string>());
    }
    if (k.command[0].empty() || k.command[0][0] != '/') {
      throw PolicyError(at + ": command[0] must be an absolute path (the program to run)");
    }
    if (auto it = e.find("env"); it != e.end()) {
      if (!it->is_object()) throw PolicyError(at + ": env must be a table of strings");
      for (const auto& [name, val] : it->items()) {
        if (!val.is_string() || name.empty() || name.find('=') != std::string::npos ||
            name.find('\0') != std::string::npos ||
            val.get_ref<const std::string&>().find('\0') != std::string::npos) {
          throw PolicyError(at + ": env." + name + " must be a string (name without '=')");
        }
        k.env[name] = val.get<std::string>();
      }
    }
    k.workers = static_cast<int>(int_key(e, "workers", 1, 1024, 1, at));
    if (auto it = e.find("queue"); it != e.end()) {
      if (!it->is_string() || !valid_plugin_name(it->get<std::string>())) {
        throw PolicyError(at + ": queue must be 1-128 characters of [A-Za-z0-9_.:-]");
      }
      k.info.default_queue = it->get<std::string>();
    }
    k.info.timeout_ms = int_key(e, "timeout_seconds", 1, 86400 * 7, 0, at) * 1000;
    k.info.max_attempts = static_cast<int>(int_key(e, "max_attempts", 1, 1000, 0, at));
    if (auto it = e.find("retry_schedule"); it != e.end()) {
      if (!it->is_string())
        throw PolicyError(at + ": retry_schedule must be a string (\"60,300\")");
      try {
        k.info.retry_schedule = parse_retry_schedule(it->get<std::string>());
        k.info.retry_schedule_text = it->get<std::string>();
      } catch (const std::exception& ex) {
        throw PolicyError(at + ": retry_schedule: " + ex.what());
      }
    }
    int_key(e, "max_message_kb", 1, 15 * 1024, 0, at);  // read by the plugin; checked here too
    int_key(e, "cancel_grace_ms", 0, 900, 0, at);
    out.push_back(std::move(k));
  }
  return out;
}

std::vector<std::string> exec_programs(const std::vector<ExecKind>& kinds) {
  std::vector<std::string> out;
  for (const auto& k : kinds) {
    try {
      for (auto& p : program_closure(k.command[0])) {
        if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
      }
    } catch (const PolicyError& e) {
      throw PolicyError("kind '" + k.info.kind + "': " + e.what());
    }
  }
  return out;
}

size_t add_config_kinds(LoadedPlugin& p, const nlohmann::json& sections) {
  if (!declares_config_kinds(p.manifest)) return 0;
  nlohmann::json section = nlohmann::json::object();
  if (sections.is_object() && sections.contains(p.name)) section = sections[p.name];
  auto kinds = parse_exec_kinds(section);
  for (auto& k : kinds) {
    for (const auto& have : p.kinds) {
      if (have.kind == k.info.kind) {
        throw PolicyError("kind '" + k.info.kind + "' is declared twice");
      }
    }
    p.kinds.push_back(k.info);
  }
  return kinds.size();
}

}  // namespace jr::sandbox
