#include "identity.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "process.hpp"
#include "sandbox.hpp"

namespace jr::sandbox {
namespace {

std::mutex g_mu;
std::map<uint32_t, std::string> g_slots;  // slot -> plugin name (guarded by g_mu)

// True when `id` is inside one of the ranges of /proc/self/{uid,gid}_map.
bool mapped(const char* file, uint32_t id) {
  std::ifstream in(file);
  if (!in) return true;  // no user namespaces: every id is valid
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    uint64_t inside = 0, outside = 0, count = 0;
    if (!(ls >> inside >> outside >> count)) continue;
    if (id >= inside && id < inside + count) return true;
  }
  return false;
}

bool id_in_use(uint32_t id) {
  // getpwuid_r/getgrgid_r: the registry mutex is held, but other threads may use getpw* too.
  char buf[4096];
  struct passwd pw {};
  struct passwd* pr = nullptr;
  if (getpwuid_r(id, &pw, buf, sizeof buf, &pr) == 0 && pr != nullptr) return true;
  struct group gr {};
  struct group* grr = nullptr;
  return getgrgid_r(id, &gr, buf, sizeof buf, &grr) == 0 && grr != nullptr;
}

WorkerIdentity nobody(const std::string& why) {
  WorkerIdentity id;
  auto pw = find_user("nobody");
  if (!pw) throw SandboxError("sandbox: " + why + ", and there is no user 'nobody'");
  id.uid = pw->uid;
  id.gid = find_group("nogroup").value_or(pw->gid);
  id.name = "nobody";
  id.source = "nobody";
  id.warning = "user: " + why + "; workers share the uid 'nobody'";
  return id;
}

WorkerIdentity named(const std::string& user) {
  auto pw = find_user(user);
  if (!pw) throw SandboxError("sandbox user '" + user + "' does not exist");
  if (pw->uid == 0) throw SandboxError("sandbox user '" + user + "' is root");
  WorkerIdentity id;
  id.uid = pw->uid;
  id.gid = pw->gid;
  id.name = user;
  id.source = "configured user " + user;
  return id;
}

// "jr-<name>", cut to 32 characters of [a-z0-9_-] (a valid user name everywhere).
std::string user_name(const std::string& plugin) {
  std::string out = "jr-";
  for (char c : plugin) {
    if (out.size() >= 32) break;
    unsigned char u = static_cast<unsigned char>(c);
    out += std::isalnum(u) ? static_cast<char>(std::tolower(u)) : (c == '-' ? '-' : '_');
  }
  return out;
}

WorkerIdentity allocated(uint32_t uid, const std::string& plugin) {
  if (!mapped("/proc/self/uid_map", uid) || !mapped("/proc/self/gid_map", uid)) {
    return nobody("uid " + std::to_string(uid) + " is not mapped in this user namespace");
  }
  WorkerIdentity id;
  id.uid = id.gid = uid;
  id.name = user_name(plugin);
  id.source = "allocated";
  return id;
}

}  // namespace

uint32_t uid_slot(const std::string& plugin) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a, 64 bits
  for (unsigned char c : plugin) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return 1 + static_cast<uint32_t>(h % (kUidSlots - 1));
}

WorkerIdentity plugin_identity(const std::string& plugin, const std::string& user) {
  if (geteuid() != 0) return {-1, -1, "", "host uid", ""};
  if (!user.empty()) return named(user);
  std::lock_guard<std::mutex> lock(g_mu);
  uint32_t slot = uid_slot(plugin);
  for (uint32_t tries = 0; tries < kUidSlots; ++tries) {
    auto it = g_slots.find(slot);
    if (it != g_slots.end() && it->second == plugin) break;  // this plugin's, from before
    if (it == g_slots.end() && !id_in_use(kUidBase + slot)) {
      g_slots[slot] = plugin;
      break;
    }
    slot = slot + 1 >= kUidSlots ? 1 : slot + 1;
  }
  return allocated(kUidBase + slot, plugin);
}

WorkerIdentity describe_identity(const std::string& user) {
  if (geteuid() != 0) return {-1, -1, "", "host uid", ""};
  if (!user.empty()) return named(user);
  WorkerIdentity id = allocated(kUidBase, "describe");
  if (id.source == "allocated") id.source = "allocated (describe)";
  return id;
}

}  // namespace jr::sandbox
