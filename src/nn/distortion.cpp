#include "rdprune/distortion.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "curve_cache.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/masks.h"
#include "rdprune/process_group.h"
#include "rdprune/progress.h"
#include "rdprune/tensor_hash.h"
#include "stage_inputs.h"

namespace rdprune {
namespace {

// Curves from second-order Taylor estimates: one gradient pass, no forward pass per level.
CurveSet taylor_curves(Network& network, const Dataset& calibration,
                       const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                       const CurveOptions& options) {
  if (!options.context_kept.empty())
    throw Error("curves: the Taylor estimator does not measure around a plan");
  network.apply_masks();
  CurveSet curves;
  curves.metric = options.metric;
  curves.criterion = network.criterion();
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
    LayerCurve curve = taylor_curve(layers[i], pruning_order(network, i, mask), coefficients[i],
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
    // Never negative; rounding makes it -1e-19 or so where the outputs hardly moved.
    return std::max(0.0, (log_p.exp() * (log_p - log_q)).sum(1).mean().item<double>());
  }
  const torch::Tensor squared = (outputs.to(torch::kFloat64) - reference.to(torch::kFloat64)).pow(2);
  if (metric == "worst") return squared.flatten(1).mean(1).max().item<double>();
  return squared.mean().item<double>();
}

namespace {

// Around a plan (CurveOptions::context_kept): every layer pruned by magnitude to its context count
// while the others' curves are measured; each layer's own levels start from its weights before
// the context. The weights are put back when it goes out of scope.
class PlanContext {
 public:
  PlanContext(Network& network, const std::vector<int64_t>& kept) : layers_(network.layers()), kept_(kept) {
    if (kept.empty()) return;
    if (kept.size() != layers_.size()) {
      throw Error(
          fmt::format("curves: the context names {} layers, the model has {}", kept.size(), layers_.size()));
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
      const torch::Tensor mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
      originals_.push_back(layers_[i].weight.detach().clone());
      orders_.push_back(pruning_order(network, i, mask));
    }
    for (size_t i = 0; i < layers_.size(); ++i) layers_[i].weight.detach().copy_(in_context(i));
  }
  ~PlanContext() {
    for (size_t i = 0; i < originals_.size(); ++i) layers_[i].weight.detach().copy_(originals_[i]);
  }
  PlanContext(const PlanContext&) = delete;
  PlanContext& operator=(const PlanContext&) = delete;

  bool active() const { return !kept_.empty(); }
  const torch::Tensor& original(size_t i) const { return originals_.at(i); }
  const torch::Tensor& order(size_t i) const { return orders_.at(i); }
  torch::Tensor in_context(size_t i) const {
    return originals_[i] * mask_keeping(orders_[i], kept_[i], layers_[i].weight.sizes());
  }

 private:
  const std::vector<PrunableLayer>& layers_;
  std::vector<int64_t> kept_;
  std::vector<torch::Tensor> originals_, orders_;
};

// What the measurement of every layer shares.
struct Measurement {
  Measurement(Network& net, const Dataset& data, const CurveOptions& o)
      : network(net),
        calibration(data),
        options(o),
        reference(reference_outputs(net, data, o.batch_size)),
        context(net, o.context_kept) {
    if (options.recalibrate_bn) network.set_training(true);
    if (!options.plain && network.num_stages() > 1) {
      stages.emplace(network, calibration, options.batch_size, network.layers()[0].weight.device(),
                     options.max_memory_mib * (int64_t{1} << 20));
    }
  }

  Network& network;
  const Dataset& calibration;
  const CurveOptions& options;
  const torch::Tensor reference;
  PlanContext context;
  std::optional<StageInputs> stages;  // suffix execution; none: a full forward per level
};

// The distortion of layer i at each level `measured` indexes: set(k) puts level k in place.
std::vector<double> level_distortions(Measurement& m, size_t i, const std::vector<size_t>& measured,
                                      size_t levels, const std::function<void(size_t)>& set,
                                      Progress& progress) {
  Network& network = m.network;
  const bool from_stage = m.stages && m.stages->advance(network.stage_of(i));
  // Versions of a layer share the later stages' batch only when those stages do not use it again
  // and treat every sample on its own.
  const bool batchable = from_stage && !m.options.recalibrate_bn && network.independent_samples() &&
                         network.last_stage_of(i) == network.stage_of(i);
  const size_t group = batchable ? static_cast<size_t>(m.options.level_batch) : 1;
  std::vector<double> distortion(levels, 0.0);
  for (size_t g = 0; g < measured.size(); g += group) {
    const size_t count = std::min(group, measured.size() - g);
    std::vector<torch::Tensor> outputs;
    if (count > 1) {
      outputs = m.stages->outputs_together(count, [&](size_t j) { set(measured[g + j]); });
    } else {
      set(measured[g]);
      outputs.push_back(from_stage ? m.stages->outputs()
                                   : network_outputs(network, m.calibration, m.options.batch_size));
    }
    for (size_t j = 0; j < count; ++j)
      distortion[measured[g + j]] = output_distortion(outputs[j], m.reference, m.options.metric);
    progress.advance(static_cast<int64_t>(count), network.layers()[i].name);
  }
  return distortion;
}

// Layer i's curve: its weights pruned by magnitude to each level alone, the others as they rest.
LayerCurve measure_layer(Measurement& m, size_t i, const LayerInfo& info, const std::vector<double>& grid,
                         Progress& progress) {
  const PrunableLayer& layer = m.network.layers()[i];
  LayerCurve curve;
  curve.name = layer.name;
  curve.weights = layer.weight.numel();
  curve.flops_per_weight = std::max(0.0, info.flops_per_weight);
  const int64_t unpruned = unpruned_count(m.network, i);
  curve.sparsity_current = 1.0 - static_cast<double>(unpruned) / static_cast<double>(curve.weights);
  const std::vector<double> levels =
      layer_levels(grid, curve.sparsity_current, curve.weights, m.options.tail);
  const torch::Tensor mask = i < m.network.masks().size() ? m.network.masks()[i] : torch::Tensor();
  const bool in_context = m.context.active();
  const torch::Tensor order = in_context ? m.context.order(i) : pruning_order(m.network, i, mask);
  const torch::Tensor original = in_context ? m.context.original(i) : layer.weight.detach().clone();
  // Kept counts per level; the current level changes nothing alone, and a level that keeps as many
  // weights as the previous one has its mask and its distortion.
  std::vector<int64_t> kept(levels.size());
  std::vector<size_t> measured;
  for (size_t k = 0; k < levels.size(); ++k) {
    kept[k] = k == 0 ? unpruned : kept_at(levels[k], curve.weights);
    if (k == 0 ? in_context : kept[k] != kept[k - 1]) measured.push_back(k);
  }
  std::vector<double> distortion;
  try {
    distortion = level_distortions(
        m, i, measured, levels.size(),
        [&](size_t k) {
          layer.weight.detach().copy_(original * mask_keeping(order, kept[k], layer.weight.sizes()));
        },
        progress);
  } catch (...) {
    layer.weight.detach().copy_(original);
    throw;
  }
  layer.weight.detach().copy_(in_context ? m.context.in_context(i) : original);
  for (size_t k = 0; k < levels.size(); ++k) {
    if (k > 0 && kept[k] == kept[k - 1]) distortion[k] = distortion[k - 1];
    curve.sparsity.push_back(k == 0 ? curve.sparsity_current : levels[k]);
    curve.kept.push_back(kept[k]);
    curve.distortion.push_back(distortion[k]);
  }
  progress.advance(static_cast<int64_t>(levels.size() - measured.size()), layer.name);
  return curve;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One process's part of a turn: the layer it measured, with what it cost ("" when it had none).
std::string turn_message(const CurveSet& curves, size_t i, const LayerCurve& curve, const LayerCost& cost) {
  CurveSet one = curves;
  one.layers = {curve};
  return nlohmann::json{{"index", i},
                        {"seconds", cost.seconds},
                        {"forward_samples", cost.forward_samples},
                        {"curve", nlohmann::json::parse(to_json(one))}}
      .dump();
}

// Several processes: the layers the cache lacks are measured in turns, each process taking the
// turn's layer of its rank, in the order of the layers (suffix execution moves forward only). After
// each turn the curves are exchanged, so a rerun resumes from the last finished turn.
void measure_in_turns(Measurement& m, const std::vector<LayerInfo>& infos, const std::vector<double>& grid,
                      CurveCache& cache, const std::function<bool(size_t)>& cached, Progress& progress,
                      ProcessGroup& group, CurveSet& curves) {
  Network& network = m.network;
  const size_t n = network.layers().size();
  size_t next = 0;
  while (next < n) {
    if (cached(next)) {
      curves.layers.push_back(cache.reuse(next, network));
      progress.advance(static_cast<int64_t>(curves.layers.back().sparsity.size()));
      ++next;
      continue;
    }
    std::vector<size_t> turn;
    for (size_t i = next; i < n && turn.size() < static_cast<size_t>(group.size()) && !cached(i); ++i)
      turn.push_back(i);
    std::string mine;
    if (static_cast<size_t>(group.rank()) < turn.size()) {
      const size_t i = turn[static_cast<size_t>(group.rank())];
      const auto start = std::chrono::steady_clock::now();
      const int64_t samples_before = network.usage().forward_samples;
      const LayerCurve curve = measure_layer(m, i, infos[i], grid, progress);
      mine = turn_message(curves, i, curve,
                          {seconds_since(start), network.usage().forward_samples - samples_before});
    }
    const std::vector<std::string> parts = group.exchange(mine);
    for (size_t r = 0; r < turn.size(); ++r) {
      const auto part = nlohmann::json::parse(parts[r]);
      curves.layers.push_back(
          curves_from_json(part.at("curve").dump(), "the curves of rank " + std::to_string(r)).layers.at(0));
      if (group.is_root())
        cache.record(curves, {part.at("seconds").get<double>(), part.at("forward_samples").get<int64_t>()});
      if (static_cast<int>(r) != group.rank())
        progress.advance(static_cast<int64_t>(curves.layers.back().sparsity.size()));
    }
    next = turn.back() + 1;
  }
}

}  // namespace

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
  network.apply_masks();

  CurveSet curves;
  curves.metric = options.metric;
  curves.criterion = network.criterion();
  curves.calibration = calibration_description;
  curves.fingerprint = fingerprint(network);
  curves.levels = options.levels;
  curves.bn_recalibrated = options.recalibrate_bn;
  CurveCache cache(options.cache_dir,
                   curve_cache_key(curves.fingerprint, calibration_description, network.criterion(), options),
                   options.sink);
  auto cached = [&](size_t i) { return cache.has(i, layers[i].name, layers[i].weight.numel()); };
  bool every_layer_cached = true;
  for (size_t i = 0; i < layers.size(); ++i) every_layer_cached = every_layer_cached && cached(i);
  if (every_layer_cached) {
    for (size_t i = 0; i < layers.size(); ++i) curves.layers.push_back(cache.reuse(i, network));
    return curves;
  }
  // Batch-norm aware: pruned networks run with the statistics of each calibration batch (what
  // re-estimating them on that batch gives), which moves the running statistics; they are put back.
  std::optional<BufferGuard> buffers;
  if (options.recalibrate_bn) buffers.emplace(network);
  Measurement measurement(network, calibration, options);
  const std::vector<double> grid = level_grid(options.levels);
  int64_t total_levels = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    total_levels += static_cast<int64_t>(
        layer_levels(grid, infos[i].sparsity, layers[i].weight.numel(), options.tail).size());
  }
  Progress progress("curves", total_levels, options.sink);
  if (options.group != nullptr && options.group->size() > 1) {
    measure_in_turns(measurement, infos, grid, cache, cached, progress, *options.group, curves);
    progress.finish();
    return curves;
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    if (cached(i)) {
      curves.layers.push_back(cache.reuse(i, network));
      progress.advance(static_cast<int64_t>(curves.layers.back().sparsity.size()));
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    const int64_t samples_before = network.usage().forward_samples;
    curves.layers.push_back(measure_layer(measurement, i, infos[i], grid, progress));
    cache.record(curves, {seconds_since(start), network.usage().forward_samples - samples_before});
  }
  progress.finish();
  return curves;
}

}  // namespace rdprune
