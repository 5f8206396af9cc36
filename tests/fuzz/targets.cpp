#include "targets.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "rdprune/curves.h"
#include "rdprune/dataset.h"
#include "rdprune/error.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"
#include "rdprune/run_record.h"

namespace rdprune::fuzz {
namespace fs = std::filesystem;
namespace {

// Readers that take a path get the input as a file in this process's own directory.
const fs::path& scratch() {
  static const testing::TempDir dir;
  static const fs::path path(dir.path());
  return path;
}

std::string put(const fs::path& path, const uint8_t* data, size_t size) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path.string();
}

void put_text(const fs::path& path, const std::string& text) {
  put(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

std::string text_of(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs both readings; refused (the second's error) only when neither takes the input.
template <typename First, typename Second>
void either(First first, Second second) {
  bool taken = true;
  try {
    first();
  } catch (const Error&) {
    taken = false;
  }
  try {
    second();
  } catch (const Error&) {
    if (!taken) throw;
  }
}

// ---- the targets ---------------------------------------------------------------------------------

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

Plan seed_plan() {
  Plan plan;
  plan.method = "uniform";
  plan.sparsity_target = 0.5;
  plan.layers = {{"fc1", 64, 32, 1}, {"fc2", 16, 8, 1}};
  return plan;
}

void run_metrics(const uint8_t* data, size_t size) {
  const fs::path dir = scratch() / "run" / "round-1";
  put(dir / "metrics.json", data, size);
  put_text(dir / "plan.json", to_json(seed_plan()));
  resumed_round(dir, 1, 0.5);
}

Network& tiny_network() {
  static const std::unique_ptr<Network> network = [] {
    torch::manual_seed(0);
    ModelMeta meta;
    meta.arch = "mlp";
    meta.input_shape = {1, 8, 8};
    meta.num_classes = 2;
    return create_network(meta);
  }();
  return *network;
}

void check_tiny_settings(const fs::path& dir) {
  PipelineOptions options;
  options.method = "uniform";
  options.rd.sparsity_target = 0.5;
  check_settings(dir, options, tiny_network(), {{"fingerprint", "0123456789abcdef"}}, nullptr);
}

void run_settings(const uint8_t* data, size_t size) {
  const fs::path dir = scratch() / "settings";
  put(dir / "settings.json", data, size);
  check_tiny_settings(dir);
}

void run_model(const uint8_t* data, size_t size) {
  load_network(put(scratch() / "input.model", data, size));
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

void seed_metrics(const std::string& dir) {
  RoundResult round;
  round.round = 1;
  round.sparsity_target = 0.5;
  round.sparsity_achieved = 0.5;
  round.flops_sparsity_achieved = 0.5;
  round.pruned.top1 = 0.8;
  round.pruned.top5 = 0.95;
  round.pruned.loss = 0.5;
  round.pruned.samples = 100;
  round.finetuned = round.pruned;
  put_text(dir + "/metrics.json", round_json(round).dump(1));
}

void seed_settings(const std::string& dir) {
  const testing::TempDir made;
  check_tiny_settings(made.path());
  fs::copy_file(fs::path(made.path()) / "settings.json", fs::path(dir) / "settings.json");
}

void seed_model(const std::string& dir) {
  tiny_network().save(dir + "/checkpoint.pt");
  torch::jit::Module module("Tiny");
  module.register_parameter("weight", torch::randn({2, 64}), false);
  module.define(R"(
    def forward(self, x):
        return torch.matmul(x.flatten(1), self.weight.t())
  )");
  module.save(dir + "/script.pt");
}

// A finding: what the tool would show a user is not one line of rdprune's own.
[[noreturn]] void finding(const Target& target, const std::string& what) {
  std::fprintf(stderr, "fuzz target %s: %s\n", target.name.c_str(), what.c_str());
  std::abort();
}

}  // namespace

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {{"idx", run_idx, seed_idx},
                                          {"cifar", run_cifar, seed_cifar},
                                          {"tensors", run_tensors, seed_tensors},
                                          {"image", run_image, seed_image},
                                          {"plan", run_plan, seed_plan_file},
                                          {"curves", run_curves, seed_curves},
                                          {"metrics", run_metrics, seed_metrics},
                                          {"settings", run_settings, seed_settings},
                                          {"model", run_model, seed_model}};
  return all;
}

const Target* find_target(const std::string& name) {
  for (const auto& target : targets())
    if (target.name == name) return &target;
  return nullptr;
}

std::string run_input(const Target& target, const uint8_t* data, size_t size) {
  std::string message;
  try {
    target.run(data, size);
  } catch (const Error& e) {
    message = e.what();
  } catch (const UsageError& e) {
    message = e.what();
  } catch (const std::exception& e) {
    finding(target, std::string("an exception that is not rdprune's: ") + e.what());
  }
  if (message.find('\n') != std::string::npos) finding(target, "a message of several lines: " + message);
  return message;
}

}  // namespace rdprune::fuzz
