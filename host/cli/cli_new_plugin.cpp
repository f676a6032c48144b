// `runner new-plugin NAME DIR`: scaffolds an out-of-tree plugin project from the templates in
// sdk/templates (embedded into the binary at configure time by sdk/cmake/JobRunnerTemplates.cmake):
// the handler source with its PluginInfo (kind, default queue, timeout, sandbox policy), a
// CMakeLists.txt using the installed JobRunnerSDK package, a test using jobrunner/testing.hpp and
// a README stub.
//
// Exit codes: 0 created; 2 invalid NAME or DIR not empty / not a directory (nothing written);
// 1 an I/O error while writing (the message names the file).
// Single-threaded; touches only DIR.
#include <fcntl.h>
#include <jobrunner/abi.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cli_common.hpp"
#include "cli_registry.hpp"

namespace fs = std::filesystem;

namespace jr::cli {
namespace {

struct TemplateFile {
  const char* path;  // relative to DIR; "__name__" is replaced by NAME
  const char* text;  // {{name}}, {{Class}}, {{sdk_version}} are replaced
};

const TemplateFile kTemplates[] = {
#include "jr_scaffold_templates.inc"
};

// The name becomes the plugin name, the job kind, the default queue, a C++ class, a CMake target
// and file names, so it must be valid as all of them.
bool valid_plugin_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// my_plugin -> MyPlugin
std::string class_name(const std::string& name) {
  std::string out;
  bool upper = true;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    upper = false;
  }
  return out + "Plugin";
}

std::string replace_all(std::string s, std::string_view from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

std::string render(const std::string& text, const std::string& name) {
  std::string out = replace_all(text, "{{name}}", name);
  out = replace_all(out, "{{Class}}", class_name(name));
  return replace_all(out, "{{sdk_version}}",
                     std::to_string(JR_ABI_MAJOR) + "." + std::to_string(JR_ABI_MINOR));
}

// Creates `path` (which must not exist) with `content`.
void write_new_file(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path.string() + ": " + strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error("cannot write " + path.string() + ": " + strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    throw std::runtime_error("cannot write " + path.string() + ": " + strerror(errno));
  }
}

}  // namespace

int cmd_new_plugin(const std::string& name, const std::string& dir) {
  if (!valid_plugin_name(name)) {
    std::cerr << "runner new-plugin: invalid plugin name '" << name
              << "': use 1-63 characters from a-z, 0-9 and '_', starting with a letter (the name "
                 "becomes the plugin name, the job kind, the default queue, a C++ class and file "
                 "names)\n";
    return kExitUsage;
  }
  if (dir.empty()) {
    std::cerr << "runner new-plugin: DIR must not be empty\n";
    return kExitUsage;
  }
  std::error_code ec;
  fs::path root(dir);
  if (fs::exists(root, ec)) {
    if (!fs::is_directory(root, ec)) {
      std::cerr << "runner new-plugin: " << dir << " exists and is not a directory\n";
      return kExitUsage;
    }
    if (!fs::is_empty(root, ec) || ec) {
      std::cerr << "runner new-plugin: directory " << dir
                << " is not empty; refusing to overwrite anything (give a new or empty "
                   "directory)\n";
      return kExitUsage;
    }
  }
  std::vector<fs::path> written;
  try {
    fs::create_directories(root);
    for (const TemplateFile& t : kTemplates) {
      fs::path rel = replace_all(t.path, "__name__", name);
      write_new_file(root / rel, render(t.text, name));
      written.push_back(rel);
    }
  } catch (const std::exception& e) {
    std::cerr << "runner new-plugin: " << e.what() << "\n";
    return kExitError;
  }
  std::cout << "created plugin '" << name << "' (job kind '" << name << "', queue '" << name
            << "') in " << dir << ":\n";
  for (const auto& p : written) std::cout << "  " << p.string() << "\n";
  std::cout << "next:\n"
            << "  cmake -S " << dir << " -B " << dir
            << "/build -DCMAKE_PREFIX_PATH=<jobrunner install prefix>\n"
            << "  cmake --build " << dir << "/build && ctest --test-dir " << dir << "/build\n"
            << "  runner --plugins <dir holding libjr_" << name << ".so> --queues " << name << "\n";
  return kExitOk;
}

void register_new_plugin(CLI::App& app, Context& ctx) {
  struct NewPluginFlags {
    std::string name, dir;
  };
  auto f = std::make_shared<NewPluginFlags>();
  auto* new_plugin = app.add_subcommand(
      "new-plugin", "scaffold a plugin project (handler, manifest, CMake, test) in DIR");
  new_plugin->add_option("name", f->name, "plugin and job kind name ([a-z][a-z0-9_]*)")->required();
  new_plugin->add_option("dir", f->dir, "a new or empty directory")->required();
  on_parsed(new_plugin, ctx, [f] { return cmd_new_plugin(f->name, f->dir); });
}

}  // namespace jr::cli
