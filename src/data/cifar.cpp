// CIFAR-10/100 binary version: fixed-size records of label byte(s) followed by a 3x32x32 image in
// channel-major order.
#include <cstring>
#include <filesystem>
#include <fstream>

#include <torch/torch.h>

#include "rdprune/dataset.h"
#include "rdprune/error.h"

namespace rdprune {

std::pair<torch::Tensor, torch::Tensor> read_cifar_records(const std::vector<std::string>& paths,
                                                           int64_t label_bytes) {
  constexpr int64_t kPixels = 3 * 32 * 32;
  const int64_t record = label_bytes + kPixels;
  int64_t total = 0;
  for (const auto& path : paths) {
    std::error_code error;
    const auto size = static_cast<int64_t>(std::filesystem::file_size(path, error));
    if (error) throw Error(path + ": cannot read CIFAR file: " + error.message());
    if (size == 0 || size % record != 0) {
      throw Error(path + ": truncated or not a CIFAR binary file: " + std::to_string(size) +
                  " bytes is not a positive multiple of the " + std::to_string(record) + "-byte record");
    }
    total += size / record;
  }
  torch::Tensor images = torch::empty({total, 3, 32, 32}, torch::kUInt8);
  torch::Tensor labels = torch::empty({total}, torch::kInt64);
  auto* image_data = images.data_ptr<uint8_t>();
  auto* label_data = labels.data_ptr<int64_t>();
  std::vector<char> buffer(static_cast<size_t>(record));
  int64_t index = 0;
  for (const auto& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open CIFAR file: " + std::strerror(errno));
    while (in.read(buffer.data(), record)) {
      label_data[index] = static_cast<unsigned char>(buffer[static_cast<size_t>(label_bytes - 1)]);
      std::memcpy(image_data + index * kPixels, buffer.data() + label_bytes, kPixels);
      ++index;
    }
  }
  if (index != total) throw Error(paths.front() + ": CIFAR file changed while reading");
  return {images, labels};
}

}  // namespace rdprune
