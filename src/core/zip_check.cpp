#include "rdprune/zip_check.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <vector>

#include <fmt/format.h>

#include "rdprune/error.h"

namespace rdprune {
namespace {

constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEnd = 0x06054b50;
constexpr uint32_t kEnd64Locator = 0x07064b50;
constexpr uint32_t kEnd64 = 0x06064b50;
constexpr uint32_t kUnknown32 = 0xffffffffu;

// Little-endian fields of a byte buffer; reads past its end throw.
class Bytes {
 public:
  Bytes(std::vector<unsigned char> data, const std::string& path) : data_(std::move(data)), path_(path) {}
  uint64_t get(size_t at, size_t width) const {
    if (at + width > data_.size() || at + width < at) damaged("a field lies past the end of the file");
    uint64_t value = 0;
    for (size_t i = 0; i < width; ++i) value |= uint64_t{data_[at + i]} << (8 * i);
    return value;
  }
  size_t size() const { return data_.size(); }
  [[noreturn]] void damaged(const std::string& what) const { throw Error("damaged archive: " + what); }

 private:
  std::vector<unsigned char> data_;
  std::string path_;
};

Bytes read_range(std::ifstream& in, uint64_t begin, uint64_t count, const std::string& path) {
  std::vector<unsigned char> data(count);
  in.seekg(static_cast<std::streamoff>(begin));
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count));
  if (!in) throw Error("cannot read the archive's directory");
  return Bytes(std::move(data), path);
}

struct Directory {
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t entries = 0;
};

// The central directory's place, from the end record (and its zip64 form when the end record
// defers to it).
Directory find_directory(std::ifstream& in, uint64_t file_size, const std::string& path) {
  const uint64_t tail_size = std::min<uint64_t>(file_size, 22 + 65535);
  const uint64_t tail_begin = file_size - tail_size;
  const Bytes tail = read_range(in, tail_begin, tail_size, path);
  for (uint64_t at = tail_size >= 22 ? tail_size - 22 + 1 : 0; at-- > 0;) {
    if (tail.get(at, 4) != kEnd) continue;
    Directory directory{tail.get(at + 16, 4), tail.get(at + 12, 4), tail.get(at + 10, 2)};
    if (directory.offset != kUnknown32 && directory.size != kUnknown32) return directory;
    if (at < 20 || tail.get(at - 20, 4) != kEnd64Locator)
      tail.damaged("a zip64 end record without its locator");
    const uint64_t end64 = tail.get(at - 20 + 8, 8);
    if (end64 > file_size || file_size - end64 < 56)
      tail.damaged("the zip64 end record lies outside the file");
    const Bytes record = read_range(in, end64, 56, path);
    if (record.get(0, 4) != kEnd64) record.damaged("no zip64 end record where its locator points");
    return {record.get(48, 8), record.get(40, 8), record.get(32, 8)};
  }
  tail.damaged("no end-of-directory record");
}

// A central entry's sizes, the zip64 extra field's where the 32-bit ones defer to it.
void entry_sizes(const Bytes& dir, size_t at, uint64_t* compressed, uint64_t* uncompressed) {
  *compressed = dir.get(at + 20, 4);
  *uncompressed = dir.get(at + 24, 4);
  if (*compressed != kUnknown32 && *uncompressed != kUnknown32) return;
  const size_t name = dir.get(at + 28, 2);
  const size_t extra_end = at + 46 + name + dir.get(at + 30, 2);
  for (size_t field = at + 46 + name; field + 4 <= extra_end; field += 4 + dir.get(field + 2, 2)) {
    if (dir.get(field, 2) != 0x0001) continue;
    size_t value = field + 4;
    if (*uncompressed == kUnknown32) {
      *uncompressed = dir.get(value, 8);
      value += 8;
    }
    if (*compressed == kUnknown32) *compressed = dir.get(value, 8);
    return;
  }
  dir.damaged("a record defers its size to a zip64 field it does not have");
}

}  // namespace

void check_zip_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return;  // the reader reports what it cannot open
  const auto file_size = static_cast<uint64_t>(in.tellg());
  if (file_size < 4 || read_range(in, 0, 4, path).get(0, 4) != kLocalHeader) return;
  const Directory directory = find_directory(in, file_size, path);
  if (directory.offset > file_size || directory.size > file_size - directory.offset)
    throw Error("damaged archive: its directory lies outside the file");
  const Bytes dir = read_range(in, directory.offset, directory.size, path);
  size_t at = 0;
  for (uint64_t entry = 0; entry < directory.entries; ++entry) {
    if (dir.get(at, 4) != kCentralHeader) dir.damaged("a directory entry without its signature");
    uint64_t compressed = 0, uncompressed = 0;
    entry_sizes(dir, at, &compressed, &uncompressed);
    const uint64_t method = dir.get(at + 10, 2);
    const uint64_t ceiling = method == 0 ? compressed : compressed * 1032 + 1024;
    if (compressed > file_size || uncompressed > ceiling) {
      throw Error(fmt::format("damaged archive: record {} claims {} bytes in a file of {}", entry,
                              uncompressed, file_size));
    }
    at += 46 + dir.get(at + 28, 2) + dir.get(at + 30, 2) + dir.get(at + 32, 2);
  }
}

}  // namespace rdprune
