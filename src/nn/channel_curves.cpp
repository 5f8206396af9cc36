// Channel curves (docs/channels.md): each group's distortion over its kept channels, measured by
// suffix execution from the stage of its producing layer.
#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "channel_layers.h"
#include "rdprune/channels.h"
#include "rdprune/error.h"
#include "rdprune/process_group.h"
#include "rdprune/progress.h"
#include "stage_inputs.h"

namespace rdprune {
namespace {

// The masks and weights of the layers a group touches, put back by restore().
class GroupState {
 public:
  GroupState(Network& network, const ChannelGroup& group) : network_(network) {
    for (const auto& slice : group.slices) {
      const auto layer = layer_of(network, slice.tensor);
      if (!layer) continue;
      layers_.push_back(*layer);
      weights_.push_back(network.layers()[*layer].weight.detach().clone());
      masks_.push_back(*layer < network.masks().size() ? network.masks()[*layer] : torch::Tensor());
    }
  }
  void restore() {
    for (size_t j = 0; j < layers_.size(); ++j) {
      network_.layers()[layers_[j]].weight.detach().copy_(weights_[j]);
      network_.set_mask(layers_[j], masks_[j]);
    }
  }
  // The first stage that reads any of the group's layers.
  size_t first_stage() const {
    size_t stage = layers_.empty() ? 0 : network_.stage_of(layers_.front());
    for (const size_t layer : layers_) stage = std::min(stage, network_.stage_of(layer));
    return stage;
  }

 private:
  Network& network_;
  std::vector<size_t> layers_;
  std::vector<torch::Tensor> weights_, masks_;
};

// A group's curve without distortions: its kept-channel levels, the grid's, never emptying it.
LayerCurve levels_of(const ChannelGroup& group, int64_t levels) {
  LayerCurve curve;
  curve.name = group.name;
  curve.weights = group.channels;
  for (const double s : layer_levels(level_grid(levels), 0.0, curve.weights, /*tail=*/false)) {
    const int64_t kept = kept_at(s, curve.weights);
    if (kept < 1 || (!curve.kept.empty() && kept == curve.kept.back())) continue;
    curve.sparsity.push_back(s);
    curve.kept.push_back(kept);
  }
  return curve;
}

LayerCurve measure_group(Network& network, const ChannelGroup& group, std::optional<StageInputs>& stages,
                         const Dataset& calibration, const torch::Tensor& reference,
                         const CurveOptions& options, Progress& progress) {
  LayerCurve curve = levels_of(group, options.levels);
  GroupState state(network, group);
  const torch::Tensor order = channel_order(network, group);
  const bool from_stage = stages && stages->advance(state.first_stage());
  try {
    for (const int64_t kept : curve.kept) {
      state.restore();
      mask_channels(network, group, keep_last(order, kept));
      const torch::Tensor outputs =
          from_stage ? stages->outputs() : network_outputs(network, calibration, options.batch_size);
      curve.distortion.push_back(output_distortion(outputs, reference, options.metric));
      progress.advance(1, group.name);
    }
  } catch (...) {
    state.restore();
    throw;
  }
  state.restore();
  return curve;
}

// What channel curves do not take (docs/channels.md).
void check_channel_options(const CurveOptions& options) {
  auto refuse = [](const std::string& why) { throw Error("channel curves: " + why); };
  if (options.estimator != "measured") refuse("they are measured; the Taylor estimator is for weights");
  if (options.level_batch != 1) refuse("they run one level at a time (level_batch 1)");
  if (!options.context_kept.empty()) refuse("they are measured on the network as it is, not around a plan");
  if (options.group != nullptr && options.group->size() > 1)
    refuse("they run in one process in this version");
}

}  // namespace

CurveSet measure_channel_curves(Network& network, const Dataset& calibration,
                                const std::string& calibration_description,
                                const std::vector<LayerInfo>& infos, const CurveOptions& options) {
  validate(options);
  check_channel_options(options);
  const auto groups = channel_groups(network);
  CurveSet curves;
  curves.metric = options.metric;
  curves.calibration = calibration_description;
  curves.fingerprint = fingerprint(network);
  curves.levels = options.levels;
  curves.granularity = "channel";
  curves.channel_costs = channel_cost_model(groups, infos);
  curves.bn_recalibrated = options.recalibrate_bn;
  torch::NoGradGuard no_grad;
  network.set_training(false);
  const torch::Tensor reference = reference_outputs(network, calibration, options.batch_size);
  // Batch-norm aware: the pruned networks run on each calibration batch's own statistics, which
  // moves the running statistics; the guard puts them back.
  std::optional<BufferGuard> buffers;
  if (options.recalibrate_bn) {
    buffers.emplace(network);
    network.set_training(true);
  }
  std::optional<StageInputs> stages;
  if (!options.plain && network.num_stages() > 1) {
    stages.emplace(network, calibration, options.batch_size, network.layers()[0].weight.device(),
                   options.max_memory_mib * (int64_t{1} << 20));
  }
  int64_t total = 0;
  for (const auto& group : groups)
    total += static_cast<int64_t>(levels_of(group, options.levels).kept.size());
  Progress progress("channel curves", total, options.sink);
  for (const auto& group : groups)
    curves.layers.push_back(measure_group(network, group, stages, calibration, reference, options, progress));
  progress.finish();
  validate(curves, "channel curves");
  return curves;
}

}  // namespace rdprune
