// LocalStorage against a real directory tree: lexical checks, kernel-enforced resolution
// (openat2) and the realpath fallback, each escape route (.., absolute, symlinks out of the root).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "dataset_parse/src/storage.hpp"
#include "gen.hpp"
#include "harness.hpp"

namespace fs = std::filesystem;
using dataset_parse::LocalStorage;
using dataset_parse::StorageError;
using Code = dataset_parse::StorageError::Code;

namespace {

std::string read_all(dataset_parse::InputStream& in) {
  std::string out;
  char buf[7];  // small on purpose: several reads
  for (size_t n; (n = in.read(buf, sizeof buf)) > 0;) out.append(buf, n);
  return out;
}

Code code_of(const LocalStorage& s, const std::string& rel) {
  try {
    s.open(rel);
  } catch (const StorageError& e) {
    return e.code();
  }
  ADD_FAILURE() << "open('" << rel << "') did not throw";
  return Code::kIo;
}

class StorageTest : public ::testing::TestWithParam<LocalStorage::Resolver> {
 protected:
  void SetUp() override {
    root_ = tmp_.path() + "/root";
    outside_ = tmp_.path() + "/outside";
    fs::create_directories(root_ + "/us");
    fs::create_directories(outside_);
    dptest::write_file(root_ + "/us/yob2020.txt", "Emma,F,100\n");
    dptest::write_file(outside_ + "/yob1999.txt", "Secret,F,5\n");
    fs::create_symlink(outside_ + "/yob1999.txt", root_ + "/us/yob1999.txt");  // file, out
    fs::create_symlink(outside_, root_ + "/elsewhere");                        // dir, out
    fs::create_symlink("us/yob2020.txt", root_ + "/alias.txt");   // relative, stays inside
    fs::create_symlink("yob2020.txt", root_ + "/us/latest.txt");  // stays inside
  }
  jrtest::TempDir tmp_;
  std::string root_, outside_;
};

TEST_P(StorageTest, ReadsAFileBelowTheRoot) {
  LocalStorage s(root_, GetParam());
  auto in = s.open("us/yob2020.txt");
  EXPECT_EQ(in->size(), 11u);
  EXPECT_EQ(read_all(*in), "Emma,F,100\n");
}

TEST_P(StorageTest, FollowsSymlinksThatStayInside) {
  LocalStorage s(root_, GetParam());
  EXPECT_EQ(read_all(*s.open("us/latest.txt")), "Emma,F,100\n");
  EXPECT_EQ(read_all(*s.open("alias.txt")), "Emma,F,100\n");
}

TEST_P(StorageTest, RefusesDotDotAndAbsolutePaths) {
  LocalStorage s(root_, GetParam());
  EXPECT_EQ(code_of(s, "../outside/yob1999.txt"), Code::kInvalidPath);
  EXPECT_EQ(code_of(s, "us/../../outside/yob1999.txt"), Code::kInvalidPath);
  EXPECT_EQ(code_of(s, outside_ + "/yob1999.txt"), Code::kInvalidPath);
  EXPECT_EQ(code_of(s, "/etc/hostname"), Code::kInvalidPath);
  EXPECT_EQ(code_of(s, ""), Code::kInvalidPath);
  EXPECT_EQ(code_of(s, "us//yob2020.txt"), Code::kInvalidPath);
  EXPECT_EQ(code_of(s, "./us/yob2020.txt"), Code::kInvalidPath);
}

TEST_P(StorageTest, RefusesSymlinksOutOfTheRoot) {
  LocalStorage s(root_, GetParam());
  EXPECT_EQ(code_of(s, "us/yob1999.txt"), Code::kInvalidPath);
  EXPECT_EQ(code_of(s, "elsewhere/yob1999.txt"), Code::kInvalidPath);
  try {
    s.open("elsewhere/yob1999.txt");
  } catch (const StorageError& e) {
    EXPECT_TRUE(e.permanent());
    EXPECT_NE(std::string(e.what()).find("outside the storage root"), std::string::npos)
        << e.what();
  }
}

TEST_P(StorageTest, MissingFileIsNotFoundAndRetryable) {
  LocalStorage s(root_, GetParam());
  EXPECT_EQ(code_of(s, "us/yob2021.txt"), Code::kNotFound);
  EXPECT_EQ(code_of(s, "nope/yob2021.txt"), Code::kNotFound);
  try {
    s.open("us/yob2021.txt");
  } catch (const StorageError& e) {
    EXPECT_FALSE(e.permanent());
  }
}

TEST_P(StorageTest, RefusesDirectoriesAndFifosWithoutBlocking) {
  ASSERT_EQ(mkfifo((root_ + "/us/pipe.txt").c_str(), 0600), 0);
  LocalStorage s(root_, GetParam());
  EXPECT_EQ(code_of(s, "us"), Code::kNotRegularFile);
  EXPECT_EQ(code_of(s, "us/pipe.txt"), Code::kNotRegularFile);  // would hang without O_NONBLOCK
}

INSTANTIATE_TEST_SUITE_P(Resolvers, StorageTest,
                         ::testing::Values(LocalStorage::Resolver::kOpenat2,
                                           LocalStorage::Resolver::kRealpath),
                         [](const auto& param_info) {
                           return param_info.param == LocalStorage::Resolver::kOpenat2 ? "openat2"
                                                                                       : "realpath";
                         });

TEST(StorageRoot, MissingRootIsRefused) {
  jrtest::TempDir tmp;
  EXPECT_THROW(LocalStorage(tmp.path() + "/missing"), StorageError);
  dptest::write_file(tmp.path() + "/file", "x");
  EXPECT_THROW(LocalStorage(tmp.path() + "/file"), StorageError);
}

}  // namespace
