#include "rdprune/distortion.h"

#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/masks.h"
#include "rdprune/progress.h"

namespace rdprune {
namespace {

// FNV-1a, 64 bits.
struct Fnv {
  uint64_t state = 0xcbf29ce484222325ULL;
  void add(const void* data, size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) {
      state ^= bytes[i];
      state *= 0x100000001b3ULL;
    }
  }
  void add(const std::string& text) { add(text.data(), text.size() + 1); }
  void add(const torch::Tensor& tensor) {
    const torch::Tensor cpu = tensor.detach().to(torch::kCPU).contiguous();
    const auto shape = cpu.sizes().vec();
    add(shape.data(), shape.size() * sizeof(int64_t));
    add(cpu.data_ptr(), static_cast<size_t>(cpu.numel()) * cpu.element_size());
  }
  std::string hex() const { return fmt::format("{:016x}", state); }
};

// Runs the network over the calibration set in order; returns float outputs [N, ...] on the CPU.
torch::Tensor run_outputs(Network& network, const Dataset& data, int64_t batch_size,
                          const torch::Device& device) {
  BatchLoader loader(data, batch_size, /*shuffle=*/false, /*seed=*/0);
  std::vector<torch::Tensor> outputs;
  for (int64_t i = 0; i < loader.num_batches(); ++i) {
    outputs.push_back(network.forward(loader.get(i).images.to(device)).to(torch::kCPU, torch::kFloat32));
  }
  return torch::cat(outputs);
}

std::string cache_key(const std::string& fingerprint, const std::string& calibration,
                      const CurveOptions& options) {
  Fnv hash;
  hash.add(fingerprint);
  hash.add(calibration);
  hash.add(options.metric);
  hash.add(std::to_string(options.levels));
  if (options.recalibrate_bn) hash.add(std::string("bn-recalibrated"));
  return hash.hex();
}

// Layers finished by an earlier run with the same key, matched by name and size.
std::vector<LayerCurve> cached_layers(const std::string& path, const std::string& key) {
  if (!std::filesystem::exists(path)) return {};
  try {
    const auto json = nlohmann::json::parse(read_file(path));
    if (json.value("key", "") != key) return {};
    return curves_from_json(json.at("curves").dump(), path).layers;
  } catch (const std::exception& e) {
    std::cerr << "curves: ignoring unreadable cache " << path << " (" << e.what() << ")\n";
    return {};
  }
}

}  // namespace

void validate(const CurveOptions& options) {
  if (options.metric != "mse" && options.metric != "worst") {
    throw UsageError("--metric: expected mse or worst, got '" + options.metric + "'");
  }
  level_grid(options.levels);
  if (options.batch_size <= 0) throw UsageError("--batch-size: expected a positive count");
}

std::string fingerprint(Network& network) {
  Fnv hash;
  for (const auto& layer : network.layers()) hash.add(layer.name);
  for (const auto& tensor : network.parameters()) hash.add(tensor);
  for (const auto& tensor : network.buffers()) hash.add(tensor);
  for (const auto& mask : network.masks()) {
    if (mask.defined())
      hash.add(mask.to(torch::kUInt8));
    else
      hash.add(std::string("dense"));
  }
  return hash.hex();
}

double output_distortion(const torch::Tensor& outputs, const torch::Tensor& reference,
                         const std::string& metric) {
  const torch::Tensor squared = (outputs.to(torch::kFloat64) - reference.to(torch::kFloat64)).pow(2);
  if (metric == "worst") return squared.flatten(1).mean(1).max().item<double>();
  return squared.mean().item<double>();
}

CurveSet measure_curves(Network& network, const Dataset& calibration,
                        const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                        const CurveOptions& options) {
  validate(options);
  if (calibration.size() == 0) throw Error("curves: the calibration set is empty");
  const auto& layers = network.layers();
  if (layers.empty()) throw Error("curves: the model has no prunable layers");
  torch::NoGradGuard no_grad;
  network.set_training(false);
  const torch::Device device = layers[0].weight.device();
  network.apply_masks();

  CurveSet curves;
  curves.metric = options.metric;
  curves.calibration = calibration_description;
  curves.fingerprint = fingerprint(network);
  curves.levels = options.levels;
  curves.bn_recalibrated = options.recalibrate_bn;
  // Batch-norm state to restore after each recalibrated level.
  std::vector<torch::Tensor> buffers = network.buffers();
  std::vector<torch::Tensor> saved_buffers;
  if (options.recalibrate_bn) {
    for (const auto& buffer : buffers) saved_buffers.push_back(buffer.detach().clone());
  }
  auto restore_buffers = [&] {
    for (size_t b = 0; b < saved_buffers.size(); ++b) buffers[b].detach().copy_(saved_buffers[b]);
  };

  const std::string key = cache_key(curves.fingerprint, calibration_description, options);
  std::string cache_path;
  std::vector<LayerCurve> cached;
  if (!options.cache_dir.empty()) {
    std::filesystem::create_directories(options.cache_dir);
    cache_path = (std::filesystem::path(options.cache_dir) / ("curves-" + key + ".json")).string();
    cached = cached_layers(cache_path, key);
    if (!cached.empty())
      std::cerr << "curves: resuming with " << cached.size() << " layers from " << cache_path << "\n";
  }
  auto save_cache = [&] {
    if (cache_path.empty()) return;
    nlohmann::json json = {{"key", key}, {"curves", nlohmann::json::parse(to_json(curves))}};
    write_file_atomic(cache_path, json.dump());
  };

  const torch::Tensor reference = run_outputs(network, calibration, options.batch_size, device);
  const std::vector<double> grid = level_grid(options.levels);
  int64_t total_levels = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    total_levels +=
        static_cast<int64_t>(layer_levels(grid, infos[i].sparsity, layers[i].weight.numel()).size());
  }
  Progress progress("curves", total_levels, std::cerr, options.progress);

  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& layer = layers[i];
    LayerCurve curve;
    curve.name = layer.name;
    curve.weights = layer.weight.numel();
    curve.flops_per_weight = std::max(0.0, infos[i].flops_per_weight);
    const int64_t unpruned = unpruned_count(network, i);
    curve.sparsity_current = 1.0 - static_cast<double>(unpruned) / static_cast<double>(curve.weights);
    const std::vector<double> levels = layer_levels(grid, curve.sparsity_current, curve.weights);
    if (i < cached.size() && cached[i].name == curve.name && cached[i].weights == curve.weights) {
      curves.layers.push_back(cached[i]);
      progress.advance(static_cast<int64_t>(levels.size()));
      continue;
    }
    const torch::Tensor mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
    const torch::Tensor order = magnitude_order(layer.weight, mask);
    const torch::Tensor original = layer.weight.detach().clone();
    try {
      for (size_t k = 0; k < levels.size(); ++k) {
        const int64_t kept = k == 0 ? unpruned : kept_at(levels[k], curve.weights);
        double distortion = 0.0;  // the current level changes nothing
        if (k > 0 && kept == curve.kept.back()) {
          distortion = curve.distortion.back();  // same mask as the previous level
        } else if (k > 0) {
          layer.weight.detach().copy_(original * mask_keeping(order, kept, layer.weight.sizes()));
          if (options.recalibrate_bn) recalibrate_batch_norm(network, calibration, options.batch_size);
          distortion = output_distortion(run_outputs(network, calibration, options.batch_size, device),
                                         reference, options.metric);
          restore_buffers();
        }
        curve.sparsity.push_back(k == 0 ? curve.sparsity_current : levels[k]);
        curve.kept.push_back(kept);
        curve.distortion.push_back(distortion);
        progress.advance(1, layer.name);
      }
    } catch (...) {
      layer.weight.detach().copy_(original);
      restore_buffers();
      throw;
    }
    layer.weight.detach().copy_(original);
    curves.layers.push_back(std::move(curve));
    save_cache();
  }
  progress.finish();
  return curves;
}

}  // namespace rdprune
