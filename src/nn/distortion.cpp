#include "rdprune/distortion.h"

#include <filesystem>
#include <functional>
#include <optional>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/masks.h"
#include "rdprune/progress.h"
#include "rdprune/tensor_hash.h"

namespace rdprune {
namespace {

// The inputs of one stage for every calibration batch, carried forward stage by stage so that a
// layer's levels run only the stages from its own on (suffix execution).
class StageInputs {
 public:
  StageInputs(Network& network, const Dataset& data, int64_t batch_size, const torch::Device& device,
              int64_t max_bytes)
      : network_(network), max_bytes_(max_bytes) {
    BatchLoader loader(data, batch_size, /*shuffle=*/false, /*seed=*/0);
    for (int64_t i = 0; i < loader.num_batches(); ++i) inputs_.push_back({loader.get(i).images.to(device)});
  }

  // Moves the cache to the inputs of `stage` (never backwards). False when they would take more
  // than the memory limit; the cache then stays where it was.
  bool advance(size_t stage) {
    if (stage <= stage_) return stage == stage_;
    std::vector<StageValues> next;
    int64_t bytes = 0;
    for (const auto& input : inputs_) {
      next.push_back(network_.run_stages(stage_, stage, input));
      for (const auto& value : next.back())
        bytes += value.numel() * static_cast<int64_t>(value.element_size());
      if (max_bytes_ > 0 && bytes > max_bytes_) return false;
    }
    inputs_ = std::move(next);
    stage_ = stage;
    return true;
  }

  // The network's outputs from the cached stage on, [N, ...] float on the CPU.
  torch::Tensor outputs() {
    std::vector<torch::Tensor> outputs;
    for (const auto& input : inputs_) outputs.push_back(logits(network_.run_stages(stage_, last(), input)));
    return torch::cat(outputs);
  }

  // The outputs of `count` versions of the cached stage at once: set(j) puts version j in place,
  // the cached stage runs once per version, and the stages after it run all versions of a
  // calibration batch as one batch. One [N, ...] tensor per version.
  std::vector<torch::Tensor> outputs_together(size_t count, const std::function<void(size_t)>& set) {
    std::vector<std::vector<StageValues>> heads(inputs_.size());
    for (size_t j = 0; j < count; ++j) {
      set(j);
      for (size_t b = 0; b < inputs_.size(); ++b)
        heads[b].push_back(network_.run_stages(stage_, stage_ + 1, inputs_[b]));
    }
    std::vector<std::vector<torch::Tensor>> outputs(count);
    for (auto& versions : heads) {
      // Each value the stage hands on, every version's batch one after the other.
      StageValues together;
      for (size_t v = 0; v < versions.front().size(); ++v) {
        std::vector<torch::Tensor> parts;
        for (const auto& version : versions) parts.push_back(version.at(v));
        together.push_back(torch::cat(parts));
      }
      versions.clear();
      const auto tails = logits(network_.run_stages(stage_ + 1, last(), std::move(together)))
                             .chunk(static_cast<int64_t>(count));
      for (size_t j = 0; j < count; ++j) outputs[j].push_back(tails[j]);
    }
    std::vector<torch::Tensor> result;
    for (const auto& parts : outputs) result.push_back(torch::cat(parts));
    return result;
  }

 private:
  size_t last() const { return network_.num_stages(); }
  static torch::Tensor logits(const StageValues& values) {
    return values.at(0).to(torch::kCPU, torch::kFloat32);
  }

  Network& network_;
  int64_t max_bytes_;
  size_t stage_ = 0;
  std::vector<StageValues> inputs_;  // per calibration batch
};

std::string cache_key(const std::string& fingerprint, const std::string& calibration,
                      const CurveOptions& options) {
  Fnv hash;
  hash.add(fingerprint);
  hash.add(calibration);
  hash.add(options.metric);
  hash.add(std::to_string(options.levels));
  if (options.tail) hash.add(std::string("geometric tail"));
  if (options.recalibrate_bn) hash.add(std::string("bn-recalibrated"));
  if (!options.context_kept.empty()) {
    hash.add(std::string("context"));
    hash.add(options.context_kept.data(), options.context_kept.size() * sizeof(int64_t));
  }
  return hash.hex();
}

// Layers finished by an earlier run with the same key, matched by name and size.
std::vector<LayerCurve> cached_layers(const std::string& path, const std::string& key, Sink* sink) {
  if (!std::filesystem::exists(path)) return {};
  try {
    const auto json = nlohmann::json::parse(read_file(path));
    if (json.value("key", "") != key) return {};
    return curves_from_json(json.at("curves").dump(), path).layers;
  } catch (const std::exception& e) {
    note(sink, "curves: ignoring unreadable cache " + path + " (" + e.what() + ")");
    return {};
  }
}

// Curves from second-order Taylor estimates: one gradient pass, no forward pass per level.
CurveSet taylor_curves(Network& network, const Dataset& calibration,
                       const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                       const CurveOptions& options) {
  if (!options.context_kept.empty())
    throw Error("curves: the Taylor estimator does not measure around a plan");
  network.apply_masks();
  CurveSet curves;
  curves.metric = options.metric;
  curves.calibration = calibration_description + ", taylor estimate";
  curves.fingerprint = fingerprint(network);
  curves.levels = options.levels;
  const auto coefficients = taylor_coefficients(network, calibration, options.metric, /*seed=*/0);
  const std::vector<double> grid = level_grid(options.levels);
  const auto& layers = network.layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const torch::Tensor mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
    const int64_t weights = layers[i].weight.numel();
    const int64_t unpruned = unpruned_count(network, i);
    const double current = 1.0 - static_cast<double>(unpruned) / static_cast<double>(weights);
    LayerCurve curve = taylor_curve(layers[i], mask, coefficients[i],
                                    layer_levels(grid, current, weights, options.tail), unpruned);
    curve.sparsity_current = current;
    curve.sparsity.front() = current;
    curve.flops_per_weight = std::max(0.0, infos[i].flops_per_weight);
    curves.layers.push_back(std::move(curve));
  }
  return curves;
}

}  // namespace

torch::Tensor network_outputs(Network& network, const Dataset& data, int64_t batch_size) {
  const torch::Device device =
      network.layers().empty() ? torch::Device(torch::kCPU) : network.layers()[0].weight.device();
  BatchLoader loader(data, batch_size, /*shuffle=*/false, /*seed=*/0);
  std::vector<torch::Tensor> outputs;
  for (int64_t i = 0; i < loader.num_batches(); ++i) {
    outputs.push_back(network.forward(loader.get(i).images.to(device)).to(torch::kCPU, torch::kFloat32));
  }
  return torch::cat(outputs);
}

torch::Tensor reference_outputs(Network& network, const Dataset& data, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  network.set_training(false);
  torch::Tensor outputs = network_outputs(network, data, batch_size);
  // Every distortion is measured against these: NaN here would make every curve NaN.
  if (!torch::isfinite(outputs).all().item<bool>()) {
    throw Error(
        fmt::format("the model's outputs on {} are not finite (NaN or infinity): its weights or the "
                    "data are damaged",
                    data.description()));
  }
  return outputs;
}

BufferGuard::BufferGuard(Network& network) : network_(network), buffers_(network.buffers()) {
  for (const auto& buffer : buffers_) saved_.push_back(buffer.detach().clone());
}

BufferGuard::~BufferGuard() {
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < buffers_.size(); ++b) buffers_[b].detach().copy_(saved_[b]);
  network_.set_training(false);
}

NetworkState snapshot(Network& network) {
  torch::NoGradGuard no_grad;
  NetworkState state;
  for (const auto& parameter : network.parameters()) state.parameters.push_back(parameter.detach().clone());
  for (const auto& buffer : network.buffers()) state.buffers.push_back(buffer.detach().clone());
  state.masks = network.masks();  // set_mask replaces masks, never writes into them
  return state;
}

void restore(Network& network, const NetworkState& state) {
  torch::NoGradGuard no_grad;
  const auto parameters = network.parameters();
  const auto buffers = network.buffers();
  if (parameters.size() != state.parameters.size() || buffers.size() != state.buffers.size())
    throw Error("restore: the state is of another network");
  for (size_t i = 0; i < parameters.size(); ++i) {
    parameters[i].mutable_grad() = torch::Tensor();
    parameters[i].detach().copy_(state.parameters[i]);
  }
  for (size_t b = 0; b < buffers.size(); ++b) buffers[b].detach().copy_(state.buffers[b]);
  for (size_t i = 0; i < network.layers().size(); ++i)
    network.set_mask(i, i < state.masks.size() ? state.masks[i] : torch::Tensor());
  network.set_training(false);
}

void validate(const CurveOptions& options) {
  if (options.metric != "mse" && options.metric != "worst" && options.metric != "kl") {
    throw UsageError("metric", "expected mse, worst or kl, got '" + options.metric + "'");
  }
  if (options.estimator != "measured" && options.estimator != "taylor") {
    throw UsageError("estimator", "expected measured or taylor, got '" + options.estimator + "'");
  }
  if (options.estimator == "taylor" && options.recalibrate_bn) {
    throw UsageError("estimator", "is taylor, but batch-norm aware curves need measured curves");
  }
  if (options.max_memory_mib < 0) throw UsageError("max_memory_mib", "expected MiB >= 0");
  if (options.level_batch < 1) throw UsageError("level_batch", "expected a count >= 1");
  level_grid(options.levels);
  if (options.batch_size <= 0) throw UsageError("batch_size", "expected a positive count");
}

std::string fingerprint(Network& network) {
  Fnv hash;
  for (const auto& layer : network.layers()) hash.add(layer.name);
  for (const auto& tensor : network.parameters()) add_tensor(hash, tensor);
  for (const auto& tensor : network.buffers()) add_tensor(hash, tensor);
  for (const auto& mask : network.masks()) {
    if (mask.defined())
      add_tensor(hash, mask.to(torch::kUInt8));
    else
      hash.add(std::string("dense"));
  }
  return hash.hex();
}

double output_distortion(const torch::Tensor& outputs, const torch::Tensor& reference,
                         const std::string& metric) {
  if (metric == "kl") {
    // KL(softmax(reference) || softmax(outputs)), averaged over samples: blind to shifts that move
    // every logit of a sample alike, which leave the prediction unchanged.
    const torch::Tensor log_p = torch::log_softmax(reference.to(torch::kFloat64).flatten(1), 1);
    const torch::Tensor log_q = torch::log_softmax(outputs.to(torch::kFloat64).flatten(1), 1);
    return (log_p.exp() * (log_p - log_q)).sum(1).mean().item<double>();
  }
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
  if (options.estimator == "taylor")
    return taylor_curves(network, calibration, calibration_description, infos, options);
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
  // Batch-norm aware: pruned networks run with the statistics of each calibration batch (what
  // re-estimating them on that batch gives), which moves the running statistics; they are put back.
  std::optional<BufferGuard> buffers;
  if (options.recalibrate_bn) buffers.emplace(network);

  const std::string key = cache_key(curves.fingerprint, calibration_description, options);
  std::string cache_path;
  std::vector<LayerCurve> cached;
  if (!options.cache_dir.empty()) {
    std::filesystem::create_directories(options.cache_dir);
    cache_path = (std::filesystem::path(options.cache_dir) / ("curves-" + key + ".json")).string();
    cached = cached_layers(cache_path, key, options.sink);
    if (!cached.empty())
      note(options.sink, fmt::format("curves: resuming with {} layers from {}", cached.size(), cache_path));
  }
  auto save_cache = [&] {
    if (cache_path.empty()) return;
    nlohmann::json json = {{"key", key}, {"curves", nlohmann::json::parse(to_json(curves))}};
    write_file_atomic(cache_path, json.dump());
  };

  const torch::Tensor reference = reference_outputs(network, calibration, options.batch_size);

  // Around a plan: every layer pruned by magnitude to its context count while the others' curves
  // are measured; each layer's own levels start from its weights before the context.
  const bool in_context = !options.context_kept.empty();
  if (in_context && options.context_kept.size() != layers.size()) {
    throw Error(fmt::format("curves: the context names {} layers, the model has {}",
                            options.context_kept.size(), layers.size()));
  }
  std::vector<torch::Tensor> originals, orders;
  for (size_t i = 0; in_context && i < layers.size(); ++i) {
    const torch::Tensor mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
    originals.push_back(layers[i].weight.detach().clone());
    orders.push_back(magnitude_order(layers[i].weight, mask));
  }
  auto weight_in_context = [&](size_t i) {
    return originals[i] * mask_keeping(orders[i], options.context_kept[i], layers[i].weight.sizes());
  };
  auto restore_originals = [&] {
    for (size_t i = 0; i < originals.size(); ++i) layers[i].weight.detach().copy_(originals[i]);
  };
  for (size_t i = 0; i < originals.size(); ++i) layers[i].weight.detach().copy_(weight_in_context(i));
  if (options.recalibrate_bn) network.set_training(true);
  const bool suffix = !options.plain && network.num_stages() > 1;
  std::optional<StageInputs> stage_inputs;
  if (suffix)
    stage_inputs.emplace(network, calibration, options.batch_size, device,
                         options.max_memory_mib * (int64_t{1} << 20));
  const std::vector<double> grid = level_grid(options.levels);
  int64_t total_levels = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    total_levels += static_cast<int64_t>(
        layer_levels(grid, infos[i].sparsity, layers[i].weight.numel(), options.tail).size());
  }
  Progress progress("curves", total_levels, options.sink);

  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& layer = layers[i];
    LayerCurve curve;
    curve.name = layer.name;
    curve.weights = layer.weight.numel();
    curve.flops_per_weight = std::max(0.0, infos[i].flops_per_weight);
    const int64_t unpruned = unpruned_count(network, i);
    curve.sparsity_current = 1.0 - static_cast<double>(unpruned) / static_cast<double>(curve.weights);
    const std::vector<double> levels =
        layer_levels(grid, curve.sparsity_current, curve.weights, options.tail);
    if (i < cached.size() && cached[i].name == curve.name && cached[i].weights == curve.weights) {
      curves.layers.push_back(cached[i]);
      progress.advance(static_cast<int64_t>(levels.size()));
      continue;
    }
    const torch::Tensor mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
    const torch::Tensor order = in_context ? orders[i] : magnitude_order(layer.weight, mask);
    const torch::Tensor original = in_context ? originals[i] : layer.weight.detach().clone();
    const torch::Tensor resting = in_context ? weight_in_context(i) : original;
    try {
      const bool from_stage = stage_inputs && stage_inputs->advance(network.stage_of(i));
      // Kept counts per level; the current level changes nothing alone, and a level that keeps as
      // many weights as the previous one has its mask and its distortion.
      std::vector<int64_t> kept(levels.size());
      std::vector<size_t> measured;
      for (size_t k = 0; k < levels.size(); ++k) {
        kept[k] = k == 0 ? unpruned : kept_at(levels[k], curve.weights);
        if (k == 0 ? in_context : kept[k] != kept[k - 1]) measured.push_back(k);
      }
      auto set_level = [&](size_t k) {
        layer.weight.detach().copy_(original * mask_keeping(order, kept[k], layer.weight.sizes()));
      };
      std::vector<double> distortion(levels.size(), 0.0);
      // Versions of a layer share the later stages' batch only when those stages do not use it
      // again and treat every sample on its own.
      const bool batchable = from_stage && !options.recalibrate_bn && network.independent_samples() &&
                             network.last_stage_of(i) == network.stage_of(i);
      const size_t group = batchable ? static_cast<size_t>(options.level_batch) : 1;
      for (size_t g = 0; g < measured.size(); g += group) {
        const size_t count = std::min(group, measured.size() - g);
        std::vector<torch::Tensor> outputs;
        if (count > 1) {
          outputs = stage_inputs->outputs_together(count, [&](size_t j) { set_level(measured[g + j]); });
        } else {
          set_level(measured[g]);
          outputs.push_back(from_stage ? stage_inputs->outputs()
                                       : network_outputs(network, calibration, options.batch_size));
        }
        for (size_t j = 0; j < count; ++j)
          distortion[measured[g + j]] = output_distortion(outputs[j], reference, options.metric);
        progress.advance(static_cast<int64_t>(count), layer.name);
      }
      for (size_t k = 0; k < levels.size(); ++k) {
        if (k > 0 && kept[k] == kept[k - 1]) distortion[k] = distortion[k - 1];
        curve.sparsity.push_back(k == 0 ? curve.sparsity_current : levels[k]);
        curve.kept.push_back(kept[k]);
        curve.distortion.push_back(distortion[k]);
      }
      progress.advance(static_cast<int64_t>(levels.size() - measured.size()), layer.name);
    } catch (...) {
      layer.weight.detach().copy_(original);
      restore_originals();
      throw;
    }
    layer.weight.detach().copy_(resting);
    curves.layers.push_back(std::move(curve));
    save_cache();
  }
  restore_originals();
  progress.finish();
  return curves;
}

}  // namespace rdprune
