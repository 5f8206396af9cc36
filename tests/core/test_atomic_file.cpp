#include "rdprune/atomic_file.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "rdprune/error.h"

namespace rdprune {
namespace {
namespace fs = std::filesystem;

class AtomicFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rdprune-atomic-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(AtomicFile, WritesAndReplaces) {
  const std::string path = (dir_ / "a.json").string();
  write_file_atomic(path, "first");
  EXPECT_EQ(read_file(path), "first");
  write_file_atomic(path, "second");
  EXPECT_EQ(read_file(path), "second");
  // No temporary files are left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(AtomicFile, FailedWriteKeepsTheOldFile) {
  const std::string path = (dir_ / "b.json").string();
  write_file_atomic(path, "old");
  EXPECT_THROW(replace_file_atomic(path,
                                   [](const std::string& tmp) {
                                     write_file_atomic(tmp, "partial");
                                     throw Error("interrupted");
                                   }),
               Error);
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(AtomicFile, MissingDirectoryIsAClearError) {
  try {
    write_file_atomic((dir_ / "missing" / "c.json").string(), "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
  }
}

TEST_F(AtomicFile, WritingRemovesTheTemporariesOfKilledWritersOnly) {
  // A pid no process holds: a child that has exited and been reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  const std::string path = (dir_ / "a.json").string();
  const std::string dead = path + ".tmp." + std::to_string(child);
  const std::string alive = path + ".tmp." + std::to_string(::getppid());
  const std::string other = (dir_ / "b.json").string() + ".tmp." + std::to_string(child);
  for (const auto& name : {dead, alive, other}) write_file_atomic(name, "partial");
  write_file_atomic(path, "whole");
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive));  // its writer may still be at work
  EXPECT_TRUE(fs::exists(other));  // another file's
  EXPECT_EQ(read_file(path), "whole");
}

TEST_F(AtomicFile, ReadingAMissingFileNamesIt) {
  try {
    read_file((dir_ / "nope").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
}

}  // namespace
}  // namespace rdprune
