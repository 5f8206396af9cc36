// Channel granularity (docs/channels.md): what a network costs when whole channels go. Removing
// channels of a group shrinks the output side of the layers that produce them and the input side
// of the layers that read them, so a layer's kept weights are the product of two groups' kept
// fractions: costs are not separable across groups. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rdprune/budget.h"

namespace rdprune {

// Where one tensor of a network holds a group's channels: index offset + c along `dim` is channel c,
// or, for a tensor read through a flatten, the `per_channel` indices from offset + c * per_channel
// on. The offset is where the group starts in a concatenation of several groups' channels.
struct ChannelSlice {
  std::string tensor;  // parameter or buffer path, e.g. "layer1.0.conv1.weight", "layer1.0.bn1.running_mean"
  int64_t dim = 0;
  int64_t per_channel = 1;
  int64_t offset = 0;
};

// Channels that must go together: a layer's outputs, the batch norm that follows it and the next
// layers' inputs. Named by the producing layer.
struct ChannelGroup {
  std::string name;
  int64_t channels = 0;
  std::vector<ChannelSlice> slices;
};

// The measured seconds of one layer's operation at a grid of kept widths of its output group and of
// its input channels (docs/channels.md, "Latency"). A side without a group has one width, the
// layer's own.
struct LatencyTable {
  std::vector<int64_t> out_widths;  // ascending
  std::vector<int64_t> in_widths;   // ascending
  std::vector<double> seconds;      // out_widths.size() x in_widths.size(), row-major
  bool empty() const { return seconds.empty(); }
};

// Seconds at `out` and `in` kept channels, interpolated bilinearly between the grid's widths and
// clamped to its ends; a one-width side ignores its argument.
double latency_at(const LatencyTable& table, int64_t out, int64_t in);

// Makes the table non-decreasing along both sides (the running maximum): a timing that a wider
// layer beat by noise does not let the allocation buy width for nothing.
void make_monotone(LatencyTable& table);

// One prunable layer's cost as its groups shrink: kept weights = weights * (out kept / out channels)
// * (in kept / in channels), a side without a group staying whole. A layer that reads a
// concatenation has several input groups, and input channels in none (`in_whole`) where a part of
// the concatenation stays whole; its kept input channels are those plus its groups' kept.
struct ChannelLayerCost {
  std::string name;  // the prunable layer
  int64_t weights = 0;
  double flops_per_weight = 0;     // multiply-accumulates per weight per sample
  int64_t out_group = -1;          // index into the groups; -1: the output side is never pruned
  std::vector<int64_t> in_groups;  // indices into the groups; none: the input side is never pruned
  int64_t in_whole = 0;            // input channels in no group, beside in_groups'
  LatencyTable latency;            // empty unless measured

  bool reads(int64_t group) const;
};

struct ChannelCostModel {
  std::vector<std::string> groups;  // group names, in the order plans and curves list them
  std::vector<int64_t> channels;    // per group
  std::vector<ChannelLayerCost> layers;
  // Latency budgets: the seconds per batch of everything but the layers' tables (the dense network's
  // measured time less its layers' times, at least 0), and how they were measured.
  double latency_rest = 0;
  std::string latency_setting;
  bool has_latency() const { return !layers.empty() && !layers.front().latency.empty(); }
};

// The layer's output channels, all kept (0 where it has no output group).
int64_t output_channels(const ChannelCostModel& model, const ChannelLayerCost& layer);

// The layer's input channels, all kept (0 where it has no input group).
int64_t input_channels(const ChannelCostModel& model, const ChannelLayerCost& layer);

// The layer's kept input channels when group g keeps kept[g] (0 where it has no input group).
int64_t input_width(const ChannelLayerCost& layer, const std::vector<int64_t>& kept);

// One layer's cost when its output group keeps `out` channels and its input side `in` (either
// ignored where the layer has no group on that side; `in` as input_width counts it): weights,
// multiply-accumulates per sample, or seconds per batch from its latency table.
double layer_cost(const ChannelCostModel& model, const ChannelLayerCost& layer, int64_t out, int64_t in,
                  BudgetKind kind);

// The network's cost when group g keeps kept[g] channels: the sum of its layers' costs, and for
// latency the rest. Throws Error when `kept` does not fit the model, or for latency without tables.
double channel_cost(const ChannelCostModel& model, const std::vector<int64_t>& kept, BudgetKind kind);

// Checks names, counts and indices; throws Error naming `source`.
void validate(const ChannelCostModel& model, const std::string& source);

}  // namespace rdprune
