// IDX reader (the MNIST family's format). zlib's gzread reads gzip and raw files alike.
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "rdprune/dataset.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

struct GzCloser {
  void operator()(gzFile file) const { gzclose(file); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly `size` bytes or throws naming the file and what was being read: `before` bytes of
// it were read already, of `total`.
void read_exact(gzFile file, const std::string& path, void* data, size_t size, const char* what,
                size_t before = 0, int64_t total = -1) {
  auto* out = static_cast<char*>(data);
  size_t done = 0;
  while (done < size) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(size - done, 1u << 30));
    const int got = gzread(file, out + done, chunk);
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      throw Error(path + ": corrupt data while reading " + what + " (" + message + ")");
    }
    if (got == 0) {
      throw Error(path + ": truncated: " + what + " ends after " + std::to_string(before + done) + " of " +
                  std::to_string(total < 0 ? size : static_cast<size_t>(total)) + " bytes");
    }
    done += static_cast<size_t>(got);
  }
}

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  GzHandle file(gzopen(path.c_str(), "rb"));
  if (!file) throw Error(path + ": cannot open IDX file: " + std::strerror(errno));
  unsigned char magic[4];
  read_exact(file.get(), path, magic, 4, "the header");
  // Magic: two zero bytes, a type code (0x08 = unsigned byte), and the rank.
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] == 0 || magic[3] > 4) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%02x%02x%02x%02x", magic[0], magic[1], magic[2], magic[3]);
    throw Error(path + ": wrong magic number " + text +
                ", expected 0x000008NN (unsigned-byte IDX of rank NN in 1..4)");
  }
  const int rank = magic[3];
  std::vector<int64_t> dims(static_cast<size_t>(rank));
  int64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    unsigned char bytes[4];
    read_exact(file.get(), path, bytes, 4, "the dimensions");
    const uint32_t dim = (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
                         uint32_t{bytes[3]};
    if (dim > (1u << 30)) throw Error(path + ": implausible dimension " + std::to_string(dim));
    dims[static_cast<size_t>(i)] = dim;
    count *= dim;
    if (count > (int64_t{1} << 34)) throw Error(path + ": implausible total size");
  }
  // Read in chunks before the tensor is made: a header may claim far more than the file holds.
  std::vector<uint8_t> bytes;
  constexpr int64_t kChunk = int64_t{1} << 26;
  while (static_cast<int64_t>(bytes.size()) < count) {
    const size_t done = bytes.size();
    bytes.resize(done + static_cast<size_t>(std::min(kChunk, count - static_cast<int64_t>(done))));
    read_exact(file.get(), path, bytes.data() + done, bytes.size() - done, "the data", done, count);
  }
  torch::Tensor data = torch::empty(dims, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(data.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  char extra;
  if (gzread(file.get(), &extra, 1) > 0) {
    throw Error(path + ": trailing bytes after " + std::to_string(count) + " data bytes");
  }
  return data;
}

}  // namespace rdprune
