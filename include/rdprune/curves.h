// Rate-distortion curves: per layer, the output distortion measured when that layer alone is
// pruned to each level of a sparsity grid. Torch-free; read and written as `rdprune.curves/1`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rdprune/channel_cost.h"

namespace rdprune {

inline constexpr const char* kCurvesSchema = "rdprune.curves/1";

struct LayerCurve {
  std::string name;
  int64_t weights = 0;
  double flops_per_weight = 0;
  double sparsity_current = 0;     // pruned / weights before this measurement
  std::vector<double> sparsity;    // ascending levels, each in [sparsity_current, 1]
  std::vector<int64_t> kept;       // weights - floor(sparsity * weights), non-increasing
  std::vector<double> distortion;  // finite, >= 0, one per level
};

struct CurveSet {
  std::string metric;                   // "mse", "worst" or "kl"
  std::string criterion = "magnitude";  // the within-layer order of the levels: magnitude | wanda
  std::string calibration;       // e.g. "fashion-mnist train[0:256]" or "synthetic N(0,1) 256x1x28x28 seed 0"
  std::string fingerprint;       // hash of the model's weights, buffers and masks
  int64_t levels = 100;          // grid steps (levels + 1 points from 0 to 1)
  bool bn_recalibrated = false;  // batch-norm statistics re-estimated at every level
  // weight: one curve per layer over its kept weights. channel: one curve per channel group
  // (docs/channels.md) over its kept channels (LayerCurve::weights counts channels), with the cost
  // model that prices a choice of widths.
  std::string granularity = "weight";
  ChannelCostModel channel_costs;  // channel granularity only
  std::vector<LayerCurve> layers;
};

// The uniform grid {0, 1/steps, ..., 1}. Throws UsageError unless 1 <= steps <= 100000.
std::vector<double> level_grid(int64_t steps);

// Levels of `grid` usable by a layer at `sparsity_current`: the current sparsity itself first
// (pruning nothing more), then every grid level above it.
std::vector<double> levels_from(const std::vector<double>& grid, double sparsity_current);

// The levels measured for a layer of `weights` at `sparsity_current`: levels_from(), plus the
// level that keeps a single weight when the grid's last non-empty level keeps more, so that every
// target below 1 stays reachable without emptying a layer, whatever the grid. With `tail`, also a
// geometric tail between the grid's last level below 1 and the one-weight level: the kept fraction
// halves from level to level (each level keeping fewer weights than the one before), so that a
// large layer can go to 99.5% or 99.9% instead of jumping from 1 - 1/steps to a single weight.
std::vector<double> layer_levels(const std::vector<double>& grid, double sparsity_current, int64_t weights,
                                 bool tail = false);

// Weights kept when `weights` are pruned to `sparsity`: weights - floor(sparsity * weights).
int64_t kept_at(double sparsity, int64_t weights);

// Checks every invariant above; throws Error naming `source`, the layer and the field.
void validate(const CurveSet& curves, const std::string& source);

std::string to_json(const CurveSet& curves);
// Parses and validates. Throws Error naming `source` on malformed or invalid content.
CurveSet curves_from_json(const std::string& text, const std::string& source);

}  // namespace rdprune
