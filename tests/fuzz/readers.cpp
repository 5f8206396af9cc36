// The fuzz targets of the readers of outside data in the core and data layers: IDX, CIFAR binary,
// image folders, torch.save tensor files, plan and curves JSON.
#include <filesystem>

#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "harness.h"
#include "rdprune/curves.h"
#include "rdprune/dataset.h"
#include "rdprune/plan.h"
#include "seed_plan.h"

namespace rdprune::fuzz {
namespace fs = std::filesystem;
namespace {

void run_idx(const uint8_t* data, size_t size) {
  read_idx(put(scratch() / "input.idx", data, size));
}

void run_cifar(const uint8_t* data, size_t size) {
  const std::string path = put(scratch() / "input.bin", data, size);
  either([&] { read_cifar_records({path}, 1); }, [&] { read_cifar_records({path}, 2); });
}

void run_tensors(const uint8_t* data, size_t size) {
  read_tensor_file(put(scratch() / "input.pt", data, size));
}

void run_image(const uint8_t* data, size_t size) {
  const fs::path root = scratch() / "images";
  fs::remove_all(root);
  put(root / "a" / "input.png", data, size);
  std::vector<std::string> classes;
  either([&] { read_image_folder(root.string(), 8, 1, &classes); },
         [&] { read_image_folder(root.string(), 8, 3, &classes); });
}

void run_plan(const uint8_t* data, size_t size) {
  plan_from_json(text_of(data, size), "plan.json");
}

void run_curves(const uint8_t* data, size_t size) {
  curves_from_json(text_of(data, size), "curves.json");
}

// ---- their seeds ---------------------------------------------------------------------------------

void seed_idx(const std::string& dir) {
  const std::vector<uint8_t> pixels = {0, 1, 2, 3, 250, 251, 252, 253, 254, 255, 7, 8, 9, 10, 11, 12, 13, 14};
  testing::write_idx(dir + "/images.idx", {2, 3, 3}, pixels, /*gzip=*/false);
  testing::write_idx(dir + "/images.idx.gz", {2, 3, 3}, pixels, /*gzip=*/true);
  testing::write_idx(dir + "/labels.idx", {2}, {0, 1}, /*gzip=*/false);
}

void seed_cifar(const std::string& dir) {
  for (const int64_t label_bytes : {1, 2}) {
    std::string records;
    for (int record = 0; record < 2; ++record) {
      records.append(static_cast<size_t>(label_bytes), static_cast<char>(record + 1));
      for (int i = 0; i < 3072; ++i) records.push_back(static_cast<char>((i * 7 + record) % 256));
    }
    put_text(dir + "/records-" + std::to_string(label_bytes) + ".bin", records);
  }
}

void seed_tensors(const std::string& dir) {
  const auto save = [&](const std::string& name, const torch::Tensor& x) {
    c10::Dict<std::string, torch::Tensor> dict;
    dict.insert("x", x);
    dict.insert("y", torch::tensor({0, 1}, torch::kInt64));
    const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
    put_text(dir + "/" + name, std::string(bytes.begin(), bytes.end()));
  };
  save("uint8.pt", torch::arange(32, torch::kUInt8).reshape({2, 1, 4, 4}));
  save("float.pt", torch::rand({2, 4, 4}));
}

void seed_image(const std::string& dir) {
  const testing::TempDir made;
  testing::write_image_folder(made.path(), 1, 1, 8);
  for (const auto& entry : fs::recursive_directory_iterator(made.path()))
    if (entry.is_regular_file()) fs::copy_file(entry.path(), fs::path(dir) / entry.path().filename());
}

void seed_plan_file(const std::string& dir) {
  put_text(dir + "/plan.json", to_json(seed_plan()));
}

void seed_curves(const std::string& dir) {
  CurveSet curves;
  curves.metric = "kl";
  curves.calibration = "fuzz";
  curves.fingerprint = "0123456789abcdef";
  curves.levels = 4;
  LayerCurve layer;
  layer.name = "fc1";
  layer.weights = 64;
  layer.flops_per_weight = 1;
  layer.sparsity = level_grid(4);
  for (const double s : layer.sparsity) {
    layer.kept.push_back(kept_at(s, layer.weights));
    layer.distortion.push_back(s * s);
  }
  curves.layers = {layer};
  put_text(dir + "/curves.json", to_json(curves));
}

}  // namespace

std::vector<Target> reader_targets() {
  return {{"idx", run_idx, seed_idx},
          {"cifar", run_cifar, seed_cifar},
          {"tensors", run_tensors, seed_tensors},
          {"image", run_image, seed_image},
          {"plan", run_plan, seed_plan_file},
          {"curves", run_curves, seed_curves}};
}

}  // namespace rdprune::fuzz
