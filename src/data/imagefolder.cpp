// root/<class>/<image> datasets, decoded with stb_image and resized with bilinear interpolation.
#include <stb/stb_image.h>

#include <algorithm>
#include <filesystem>

#include <torch/torch.h>

#include "rdprune/dataset.h"
#include "rdprune/error.h"

namespace rdprune {
namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// Decodes one image into uint8 [channels, size, size].
torch::Tensor decode(const std::string& path, int64_t size, int64_t channels) {
  int width = 0;
  int height = 0;
  int stored_channels = 0;
  unsigned char* pixels =
      stbi_load(path.c_str(), &width, &height, &stored_channels, static_cast<int>(channels));
  if (pixels == nullptr) {
    // stb_image's reason, on one line (some are empty or hold line breaks).
    std::string reason = stbi_failure_reason() != nullptr ? stbi_failure_reason() : "";
    std::replace(reason.begin(), reason.end(), '\n', ' ');
    reason.erase(0, reason.find_first_not_of(' '));
    reason.erase(reason.find_last_not_of(' ') + 1);
    throw Error(path + ": cannot decode image" + (reason.empty() ? "" : " (" + reason + ")"));
  }
  torch::Tensor image =
      torch::from_blob(pixels, {height, width, channels}, torch::kUInt8).permute({2, 0, 1}).clone();
  stbi_image_free(pixels);
  if (height == size && width == size) return image;
  torch::Tensor resized = torch::upsample_bilinear2d(image.unsqueeze(0).to(torch::kFloat32), {size, size},
                                                     /*align_corners=*/false);
  return resized.squeeze(0).round().clamp(0, 255).to(torch::kUInt8);
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> read_image_folder(const std::string& root, int64_t size,
                                                          int64_t channels,
                                                          std::vector<std::string>* class_names) {
  if (!fs::is_directory(root)) throw Error(root + ": image folder does not exist");
  if (size <= 0) throw UsageError("image_size", "expected a positive size");
  std::vector<std::string> classes;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (entry.is_directory()) classes.push_back(entry.path().filename().string());
  }
  std::sort(classes.begin(), classes.end());
  if (classes.empty()) throw Error(root + ": no class folders (expected root/<class>/<image>)");
  std::vector<torch::Tensor> images;
  std::vector<int64_t> labels;
  for (size_t label = 0; label < classes.size(); ++label) {
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(fs::path(root) / classes[label])) {
      if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      images.push_back(decode(file, size, channels));
      labels.push_back(static_cast<int64_t>(label));
    }
  }
  if (images.empty()) throw Error(root + ": no .png/.jpg/.jpeg/.bmp images found");
  if (class_names) *class_names = classes;
  return {torch::stack(images), torch::tensor(labels, torch::kInt64)};
}

}  // namespace rdprune
