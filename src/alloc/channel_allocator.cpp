// Channel plans behind the Allocator interface (docs/channels.md): rd over channel curves measured
// on the round's network, and the channel rules: uniform (Li et al. 2017), global (Torch-Pruning's
// normalised ranking) and slimming (batch-norm scales, Liu et al. 2017).
#include "allocators.h"
#include "rdprune/channel_allocate.h"
#include "rdprune/channels.h"
#include "rdprune/error.h"
#include "rdprune/text.h"

namespace rdprune {
namespace {

// Every group's channel scores by `criterion` (channel_scores), in group order.
std::vector<std::vector<double>> all_channel_scores(Network& network, const std::vector<ChannelGroup>& groups,
                                                    const std::string& criterion) {
  std::vector<std::vector<double>> scores;
  for (const auto& group : groups) {
    const torch::Tensor score = channel_scores(network, group, criterion).contiguous();
    scores.emplace_back(score.data_ptr<double>(), score.data_ptr<double>() + score.numel());
  }
  return scores;
}

class ChannelAllocator : public Allocator {
 public:
  ChannelAllocator(std::string method, AllocatorSettings settings)
      : method_(std::move(method)), settings_(std::move(settings)) {}
  std::string name() const override { return method_; }

  Allocation allocate(AllocatorContext& context, const RdOptions& budget) override {
    const std::vector<ChannelGroup> groups = channel_groups(context.network);
    const ChannelCostModel model = context.channel_costs != nullptr
                                       ? *context.channel_costs
                                       : channel_cost_model(groups, context.layers);
    Allocation allocation;
    if (method_ == "rd") {
      allocation.plan = measured_rd_plan(context, model, budget);
    } else if (method_ == "uniform") {
      allocation.plan = allocate_channels_uniform(model, budget);
    } else if (method_ == "slimming") {
      allocation.plan =
          allocate_channels_slimming(model, all_channel_scores(context.network, groups, "bn_scale"), budget);
    } else {
      allocation.plan =
          allocate_channels_global(model, all_channel_scores(context.network, groups, "magnitude"), budget);
    }
    return allocation;
  }

 private:
  // rd: channel curves measured on the network as it is, allocated under the cost model.
  Plan measured_rd_plan(AllocatorContext& context, const ChannelCostModel& model,
                        const RdOptions& budget) const {
    if (context.calibration == nullptr) throw Error("rd: no calibration images to measure curves on");
    CurveOptions options = settings_.curves;
    options.sink = context.sink;
    CurveSet curves = measure_channel_curves(context.network, *context.calibration,
                                             context.calibration_description, context.layers, options);
    if (context.save_curves) context.save_curves("curves", curves);
    curves.channel_costs = model;
    return allocate_channels_rd(curves, budget);
  }

  std::string method_;
  AllocatorSettings settings_;
};

}  // namespace

const std::vector<std::string>& channel_allocator_names() {
  static const std::vector<std::string> names = {"rd", "uniform", "global", "slimming"};
  return names;
}

std::unique_ptr<Allocator> make_channel_allocator(const std::string& method,
                                                  const AllocatorSettings& settings) {
  require_one_of("method", method, channel_allocator_names(), "channel method");
  return std::make_unique<ChannelAllocator>(method, settings);
}

}  // namespace rdprune
