// Channel granularity (docs/channels.md): what a network costs when whole channels go. Removing
// channels of a group shrinks the output side of the layers that produce them and the input side
// of the layers that read them, so a layer's kept weights are the product of two groups' kept
// fractions: costs are not separable across groups. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rdprune {

// Where one tensor of a network holds a group's channels: index c along `dim` is channel c, or, for
// a tensor read through a flatten, the `per_channel` indices from c * per_channel on.
struct ChannelSlice {
  std::string tensor;  // parameter or buffer path, e.g. "layer1.0.conv1.weight", "layer1.0.bn1.running_mean"
  int64_t dim = 0;
  int64_t per_channel = 1;
};

// Channels that must go together: a layer's outputs, the batch norm that follows it and the next
// layers' inputs. Named by the producing layer.
struct ChannelGroup {
  std::string name;
  int64_t channels = 0;
  std::vector<ChannelSlice> slices;
};

// One prunable layer's cost as its groups shrink: kept weights = weights * (out kept / out channels)
// * (in kept / in channels), a side without a group staying whole.
struct ChannelLayerCost {
  std::string name;  // the prunable layer
  int64_t weights = 0;
  double flops_per_weight = 0;  // multiply-accumulates per weight per sample
  int64_t out_group = -1;       // index into the groups; -1: the output side is never pruned
  int64_t in_group = -1;
};

struct ChannelCostModel {
  std::vector<std::string> groups;  // group names, in the order plans and curves list them
  std::vector<int64_t> channels;    // per group
  std::vector<ChannelLayerCost> layers;
};

// The kept weights (params) or multiply-accumulates per sample (flops) of the network when group g
// keeps kept[g] channels. Throws Error when `kept` does not fit the model.
double channel_cost(const ChannelCostModel& model, const std::vector<int64_t>& kept, bool flops);

// Checks names, counts and indices; throws Error naming `source`.
void validate(const ChannelCostModel& model, const std::string& source);

}  // namespace rdprune
