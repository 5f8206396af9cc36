#include "rdprune/zip_check.h"

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "rdprune/atomic_file.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {
namespace fs = std::filesystem;

void put(std::string& out, uint64_t value, int width) {
  for (int i = 0; i < width; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// A zip archive of one stored record "data" holding `payload`, whose directory claims
// `claimed` uncompressed bytes and starts at `directory_offset` (default: where it is).
std::string archive(const std::string& payload, uint64_t claimed, int64_t directory_offset = -1) {
  std::string zip;
  put(zip, 0x04034b50, 4);
  for (int field : {20, 0, 0, 0, 0}) put(zip, field, 2);
  put(zip, 0, 4);  // crc
  put(zip, payload.size(), 4);
  put(zip, payload.size(), 4);
  put(zip, 4, 2);
  put(zip, 0, 2);
  zip += "data" + payload;
  const uint64_t directory = zip.size();
  put(zip, 0x02014b50, 4);
  for (int field : {20, 20, 0, 0, 0, 0}) put(zip, field, 2);
  put(zip, 0, 4);  // crc
  put(zip, payload.size(), 4);
  put(zip, claimed, 4);
  for (int field : {4, 0, 0, 0, 0}) put(zip, field, 2);
  put(zip, 0, 4);  // external attributes
  put(zip, 0, 4);  // local header offset
  zip += "data";
  const uint64_t directory_size = zip.size() - directory;
  put(zip, 0x06054b50, 4);
  for (int field : {0, 0, 1, 1}) put(zip, field, 2);
  put(zip, directory_size, 4);
  put(zip, directory_offset < 0 ? directory : static_cast<uint64_t>(directory_offset), 4);
  put(zip, 0, 2);
  return zip;
}

class ZipCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rdprune-zip-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& bytes) {
    const std::string path = (dir_ / "archive.pt").string();
    write_file_atomic(path, bytes);
    return path;
  }
  fs::path dir_;
};

TEST_F(ZipCheck, PassesAnArchiveWhoseRecordsFitAndAnythingThatIsNoArchive) {
  EXPECT_NO_THROW(check_zip_records(write(archive("twelve bytes", 12))));
  EXPECT_NO_THROW(check_zip_records(write("not a zip archive at all")));
  EXPECT_NO_THROW(check_zip_records(write("")));
}

TEST_F(ZipCheck, RefusesARecordThatClaimsMoreThanTheFileHolds) {
  // What a damaged torch.save file found by fuzzing did: LibTorch would allocate the claim.
  const std::string path = write(archive("twelve bytes", 0x697562650ull & 0xffffffffull));
  try {
    check_zip_records(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("damaged archive: record 0 claims"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_zip_records(write(archive("twelve bytes", 13))), Error);
}

TEST_F(ZipCheck, RefusesADirectoryOutsideTheFileOrNoEndRecord) {
  EXPECT_THROW(check_zip_records(write(archive("twelve bytes", 12, 1 << 20))), Error);
  const std::string whole = archive("twelve bytes", 12);
  EXPECT_THROW(check_zip_records(write(whole.substr(0, whole.size() - 22))), Error);
}

}  // namespace
}  // namespace rdprune
