// Small dataset files written by the tests themselves: IDX (gzip or raw), CIFAR binary batches,
// image folders. Torch-free, so the CLI tests can use them too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rdprune::testing {

// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Learnable images: class k has a bright 7x7 square at a position set by k, plus noise.
// Returns `count` images of side `size` (row-major bytes) and their labels (in 0..classes-1).
void make_images(int64_t count, int64_t size, int64_t classes, uint64_t seed, std::vector<uint8_t>* pixels,
                 std::vector<uint8_t>* labels);

// Writes an IDX file: magic 0x000008<rank>, big-endian dims, bytes. gzip when `gzip`.
void write_idx(const std::string& path, const std::vector<int32_t>& dims, const std::vector<uint8_t>& data,
               bool gzip);

// Writes train-/t10k- images and labels IDX files of 28x28 images, 10 classes.
void write_idx_dataset(const std::string& dir, int64_t train_count, int64_t test_count, bool gzip);

// Writes CIFAR-10 (label_bytes=1: data_batch_1..5.bin, test_batch.bin) or CIFAR-100
// (label_bytes=2: train.bin, test.bin) files with `per_file` records each.
void write_cifar_dataset(const std::string& dir, int64_t label_bytes, int64_t per_file);

// Writes root/<class>/<i>.png images of `size` x `size` RGB pixels.
void write_image_folder(const std::string& root, int64_t classes, int64_t per_class, int64_t size);

// Truncates a file to `bytes` bytes.
// A port on the loopback that nothing listens on now.
int free_port();

void truncate_file(const std::string& path, int64_t bytes);

}  // namespace rdprune::testing
