// IDX reader (the MNIST family's format). zlib's gzread reads gzip and raw files alike.
#include <zlib.h>

#include <cstring>
#include <memory>

#include <torch/torch.h>

#include "rdprune/dataset.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

struct GzCloser {
  void operator()(gzFile file) const { gzclose(file); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly `size` bytes or throws naming the file and what was being read.
void read_exact(gzFile file, const std::string& path, void* data, size_t size, const char* what) {
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
      throw Error(path + ": truncated: " + what + " ends after " + std::to_string(done) + " of " +
                  std::to_string(size) + " bytes");
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
  torch::Tensor data = torch::empty(dims, torch::kUInt8);
  read_exact(file.get(), path, data.data_ptr<uint8_t>(), static_cast<size_t>(count), "the data");
  char extra;
  if (gzread(file.get(), &extra, 1) > 0) {
    throw Error(path + ": trailing bytes after " + std::to_string(count) + " data bytes");
  }
  return data;
}

}  // namespace rdprune
