// Latency tables for channel plans (docs/channels.md, "Latency"): every prunable layer's operation
// timed on this machine at a grid of its channel groups' widths, at the batch size and thread count
// given, and the rest of the network; cached by machine and settings.
#pragma once

#include "rdprune/layering.h"

#include <string>

#include "rdprune/channel_cost.h"
#include "rdprune/network.h"
#include "rdprune/sink.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

struct LatencyOptions {
  int64_t batch_size = 64;  // samples per timed call
  int64_t grid = 9;         // widths per grouped side, from 1 to the group's channels
  int64_t repeats = 5;      // timed runs per cell; the median counts
  std::string cache_dir;    // empty: measured every time
  Sink* sink = nullptr;     // progress; null: silent
};

// Throws UsageError naming the option at fault.
void validate(const LatencyOptions& options);

// What the tables hold for: the batch size, the threads (torch::get_num_threads()), the device and
// the machine (host name, processor, cores).
std::string latency_setting(Network& network, const LatencyOptions& options);

// Fills `model`'s latency tables and rest (ChannelLayerCost::latency, latency_rest,
// latency_setting) for `network` as it is now, whose cost model `model` must be (the groups and
// layers of channel_cost_model(channel_groups(network), ...); Error otherwise). Each layer's
// convolution or linear operation is timed alone on random inputs of the shapes the layer sees, at
// every pair of grid widths; the rest is the dense network's time less its layers' times (at
// least 0). Tables are made non-decreasing (make_monotone). Read from the cache when it holds
// this setting, model and grid; written there atomically otherwise. Error for a layer whose
// operation is not a convolution or linear map.
void measure_latency(Network& network, ChannelCostModel& model, const LatencyOptions& options);

}  // namespace rdprune
