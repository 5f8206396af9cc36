#include "fixtures.h"

#include <netinet/in.h>
#include <stb/stb_image_write.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace rdprune::testing {
namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "rdprune-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

void make_images(int64_t count, int64_t size, int64_t classes, uint64_t seed, std::vector<uint8_t>* pixels,
                 std::vector<uint8_t>* labels) {
  std::mt19937_64 rng(seed);
  pixels->assign(static_cast<size_t>(count * size * size), 0);
  labels->resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const auto label = static_cast<uint8_t>(rng() % static_cast<uint64_t>(classes));
    (*labels)[static_cast<size_t>(i)] = label;
    uint8_t* image = pixels->data() + i * size * size;
    for (int64_t p = 0; p < size * size; ++p) image[p] = static_cast<uint8_t>(rng() % 40);
    // Distinct square positions for up to 12 classes on 28x28 images.
    const int64_t row = (label / 4) * 7 % std::max<int64_t>(1, size - 7);
    const int64_t col = (label % 4) * 7 % std::max<int64_t>(1, size - 7);
    for (int64_t r = 0; r < 7 && row + r < size; ++r) {
      for (int64_t c = 0; c < 7 && col + c < size; ++c) image[(row + r) * size + col + c] = 220;
    }
  }
}

void write_idx(const std::string& path, const std::vector<int32_t>& dims, const std::vector<uint8_t>& data,
               bool gzip) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (int32_t dim : dims) {
    for (int shift : {24, 16, 8, 0}) bytes.push_back(static_cast<uint8_t>((dim >> shift) & 0xff));
  }
  bytes.insert(bytes.end(), data.begin(), data.end());
  if (gzip) {
    gzFile file = gzopen(path.c_str(), "wb");
    if (!file) throw std::runtime_error("cannot write " + path);
    gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(file);
  } else {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
}

void write_idx_dataset(const std::string& dir, int64_t train_count, int64_t test_count, bool gzip) {
  const std::string suffix = gzip ? ".gz" : "";
  for (const auto& [prefix, count, seed] :
       {std::tuple<std::string, int64_t, uint64_t>{"train", train_count, 1}, {"t10k", test_count, 2}}) {
    std::vector<uint8_t> pixels;
    std::vector<uint8_t> labels;
    make_images(count, 28, 10, seed, &pixels, &labels);
    write_idx(dir + "/" + prefix + "-images-idx3-ubyte" + suffix, {static_cast<int32_t>(count), 28, 28},
              pixels, gzip);
    write_idx(dir + "/" + prefix + "-labels-idx1-ubyte" + suffix, {static_cast<int32_t>(count)}, labels,
              gzip);
  }
}

void write_cifar_dataset(const std::string& dir, int64_t label_bytes, int64_t per_file) {
  const int64_t classes = label_bytes == 2 ? 100 : 10;
  std::vector<std::string> files;
  if (label_bytes == 2) {
    files = {"train.bin", "test.bin"};
  } else {
    files = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
             "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
  }
  uint64_t seed = 10;
  for (const auto& name : files) {
    std::vector<uint8_t> pixels;
    std::vector<uint8_t> labels;
    make_images(per_file, 32, classes, seed++, &pixels, &labels);
    std::ofstream out(dir + "/" + name, std::ios::binary);
    for (int64_t i = 0; i < per_file; ++i) {
      if (label_bytes == 2) out.put(static_cast<char>(labels[static_cast<size_t>(i)] / 5));  // coarse
      out.put(static_cast<char>(labels[static_cast<size_t>(i)]));
      for (int channel = 0; channel < 3; ++channel) {
        out.write(reinterpret_cast<const char*>(pixels.data() + i * 1024), 1024);
      }
    }
  }
}

void write_image_folder(const std::string& root, int64_t classes, int64_t per_class, int64_t size) {
  std::mt19937_64 rng(7);
  for (int64_t k = 0; k < classes; ++k) {
    const fs::path dir = fs::path(root) / ("class" + std::to_string(k));
    fs::create_directories(dir);
    for (int64_t i = 0; i < per_class; ++i) {
      std::vector<uint8_t> rgb(static_cast<size_t>(size * size * 3));
      for (auto& value : rgb) value = static_cast<uint8_t>(rng() % 256);
      const std::string path = (dir / (std::to_string(i) + ".png")).string();
      stbi_write_png(path.c_str(), static_cast<int>(size), static_cast<int>(size), 3, rgb.data(),
                     static_cast<int>(size * 3));
    }
  }
}

void truncate_file(const std::string& path, int64_t bytes) {
  fs::resize_file(path, static_cast<uintmax_t>(bytes));
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

}  // namespace rdprune::testing
