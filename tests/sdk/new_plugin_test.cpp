// `runner new-plugin NAME DIR` through the real binary: what it writes, what it refuses (exit 2
// with a clear message, nothing written), and that the scaffold is complete (every placeholder
// filled in, the manifest in the PluginInfo). Building and running the scaffold out of tree is
// the sdk_check test (scripts/sdk-check.sh).
#include <gtest/gtest.h>
#include <jobrunner/abi.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"

namespace fs = std::filesystem;
using jrtest::run_runner;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::set<std::string> files_under(const fs::path& root) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) out.insert(fs::relative(e.path(), root).string());
  }
  return out;
}

TEST(SdkNewPlugin, ScaffoldsAProjectWithManifestCMakeTestAndReadme) {
  jrtest::TempDir tmp;
  std::string dir = tmp.path() + "/proj/nested";
  auto r = run_runner({"new-plugin", "image_resize", dir}, {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("created plugin 'image_resize'"), std::string::npos) << r.out;
  EXPECT_EQ(files_under(dir),
            (std::set<std::string>{"CMakeLists.txt", "README.md", "src/image_resize.cpp",
                                   "test/image_resize_test.cpp"}));
  std::string src = slurp(dir + "/src/image_resize.cpp");
  EXPECT_NE(src.find("class ImageResizePlugin : public jobrunner::Plugin"), std::string::npos);
  EXPECT_NE(src.find("i.name = \"image_resize\";"), std::string::npos);
  EXPECT_NE(src.find("k.kind = \"image_resize\";"), std::string::npos);
  EXPECT_NE(src.find("k.default_queue = \"image_resize\";"), std::string::npos);
  EXPECT_NE(src.find("k.timeout_ms = 30000;"), std::string::npos);
  EXPECT_NE(src.find(R"({{"sandbox", {{"network", "none"}, {"memory_mb", 256}}}})"),
            std::string::npos);
  EXPECT_NE(src.find("JOBRUNNER_PLUGIN(ImageResizePlugin)"), std::string::npos);
  std::string cmake = slurp(dir + "/CMakeLists.txt");
  EXPECT_NE(cmake.find("find_package(JobRunnerSDK " + std::to_string(JR_ABI_MAJOR) + "." +
                       std::to_string(JR_ABI_MINOR) + " REQUIRED)"),
            std::string::npos)
      << cmake;
  EXPECT_NE(cmake.find("jobrunner_add_plugin(jr_image_resize SOURCES src/image_resize.cpp)"),
            std::string::npos);
  EXPECT_NE(cmake.find("find_package(GTest QUIET)"), std::string::npos);
  std::string test = slurp(dir + "/test/image_resize_test.cpp");
  EXPECT_NE(test.find("#include <jobrunner/testing.hpp>"), std::string::npos);
  EXPECT_NE(test.find("TEST(ImageResizePlugin, GreetsAndReportsProgress)"), std::string::npos);
  EXPECT_NE(slurp(dir + "/README.md").find("# image_resize: a jobrunner plugin"),
            std::string::npos);
  for (const auto& f : files_under(dir)) {
    std::string text = slurp(dir + "/" + f);
    for (const char* placeholder : {"{{name}}", "{{Class}}", "{{sdk_version}}", "__name__"}) {
      EXPECT_EQ(text.find(placeholder), std::string::npos) << f << " still has " << placeholder;
    }
  }
}

TEST(SdkNewPlugin, AnEmptyExistingDirectoryIsFine) {
  jrtest::TempDir tmp;
  auto r = run_runner({"new-plugin", "a1", tmp.path()}, {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp.path() + "/src/a1.cpp"));
}

TEST(SdkNewPlugin, RefusesInvalidNamesWithExit2AndWritesNothing) {
  jrtest::TempDir tmp;
  const std::vector<std::string> names = {"",          "Upper",     "1starts_with_digit",
                                          "has-dash",  "has space", "dot.ted",
                                          "../escape", "_leading",  std::string(64, 'a')};
  for (const std::string& name : names) {
    std::string dir = tmp.path() + "/x";
    auto r = run_runner({"new-plugin", name, dir}, {});
    EXPECT_EQ(r.exit_code, 2) << "'" << name << "': " << r.err;
    EXPECT_NE(r.err.find("invalid plugin name '" + name + "'"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir)) << name;
  }
  auto r = run_runner({"new-plugin", std::string(63, 'a'), tmp.path() + "/long"}, {});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(SdkNewPlugin, RefusesANonEmptyDirectoryOrAFileWithExit2) {
  jrtest::TempDir tmp;
  std::string dir = tmp.path() + "/busy";
  fs::create_directories(dir);
  std::ofstream(dir + "/CMakeLists.txt") << "# mine\n";
  auto r = run_runner({"new-plugin", "fine", dir}, {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is not empty"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(dir + "/CMakeLists.txt"), "# mine\n");  // untouched
  EXPECT_EQ(files_under(dir).size(), 1u);

  std::string file = tmp.path() + "/plain_file";
  std::ofstream(file) << "x";
  r = run_runner({"new-plugin", "fine", file}, {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is not a directory"), std::string::npos) << r.err;
}

TEST(SdkNewPlugin, AnUncreatableDirectoryIsARuntimeErrorExit1) {
  // A path below a regular file cannot be created, whoever runs the test (root included).
  jrtest::TempDir tmp;
  std::ofstream(tmp.path() + "/f") << "x";
  auto r = run_runner({"new-plugin", "fine", tmp.path() + "/f/sub"}, {});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("runner new-plugin:"), std::string::npos) << r.err;
}

}  // namespace
