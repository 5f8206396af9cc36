// Channel curves (docs/channels.md): each group's distortion over its kept channels, measured by
// suffix execution from the stage of its producing layer.
#include <optional>

#include <fmt/format.h>

#include "rdprune/channels.h"
#include "rdprune/error.h"
#include "rdprune/progress.h"
#include "stage_inputs.h"

namespace rdprune {
namespace {

// The masks and weights of the layers a group touches, put back by restore().
class GroupState {
 public:
  GroupState(Network& network, const ChannelGroup& group) : network_(network) {
    for (size_t i = 0; i < network.layers().size(); ++i) {
      for (const auto& slice : group.slices) {
        if (network.layers()[i].name + ".weight" != slice.tensor) continue;
        layers_.push_back(i);
        weights_.push_back(network.layers()[i].weight.detach().clone());
        masks_.push_back(i < network.masks().size() ? network.masks()[i] : torch::Tensor());
      }
    }
  }
  void restore() {
    for (size_t j = 0; j < layers_.size(); ++j) {
      network_.layers()[layers_[j]].weight.detach().copy_(weights_[j]);
      network_.set_mask(layers_[j], masks_[j]);
    }
  }
  size_t first_layer() const { return layers_.empty() ? 0 : layers_.front(); }

 private:
  Network& network_;
  std::vector<size_t> layers_;
  std::vector<torch::Tensor> weights_, masks_;
};

// The kept-channel levels of a group of `channels`: the grid's, never emptying it.
void set_levels(LayerCurve& curve, int64_t levels) {
  for (const double s : layer_levels(level_grid(levels), 0.0, curve.weights, /*tail=*/false)) {
    const int64_t kept = kept_at(s, curve.weights);
    if (kept < 1 || (!curve.kept.empty() && kept == curve.kept.back())) continue;
    curve.sparsity.push_back(s);
    curve.kept.push_back(kept);
  }
}

LayerCurve measure_group(Network& network, const ChannelGroup& group, std::optional<StageInputs>& stages,
                         const Dataset& calibration, const torch::Tensor& reference,
                         const CurveOptions& options, Progress& progress) {
  LayerCurve curve;
  curve.name = group.name;
  curve.weights = group.channels;
  set_levels(curve, options.levels);
  GroupState state(network, group);
  const torch::Tensor order = channel_order(network, group);
  const bool from_stage = stages && stages->advance(network.stage_of(state.first_layer()));
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

}  // namespace

CurveSet measure_channel_curves(Network& network, const Dataset& calibration,
                                const std::string& calibration_description,
                                const std::vector<LayerInfo>& infos, const CurveOptions& options) {
  validate(options);
  const auto groups = channel_groups(network);
  CurveSet curves;
  curves.metric = options.metric;
  curves.calibration = calibration_description;
  curves.fingerprint = fingerprint(network);
  curves.levels = options.levels;
  curves.granularity = "channel";
  curves.channel_costs = channel_cost_model(groups, infos);
  torch::NoGradGuard no_grad;
  network.set_training(false);
  const torch::Tensor reference = reference_outputs(network, calibration, options.batch_size);
  std::optional<StageInputs> stages;
  if (!options.plain && network.num_stages() > 1) {
    stages.emplace(network, calibration, options.batch_size, network.layers()[0].weight.device(),
                   options.max_memory_mib * (int64_t{1} << 20));
  }
  int64_t total = 0;
  for (const auto& group : groups) {
    LayerCurve probe;
    probe.weights = group.channels;
    set_levels(probe, options.levels);
    total += static_cast<int64_t>(probe.kept.size());
  }
  Progress progress("channel curves", total, options.sink);
  for (const auto& group : groups)
    curves.layers.push_back(measure_group(network, group, stages, calibration, reference, options, progress));
  progress.finish();
  validate(curves, "channel curves");
  return curves;
}

}  // namespace rdprune
