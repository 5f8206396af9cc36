// The paper's central property, measured: the distortion of pruning several layers together
// against the sum of the per-layer curve distortions.
#pragma once

#include "rdprune/layering.h"

#include <string>
#include <vector>

#include "rdprune/curves.h"
#include "rdprune/dataset.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

struct AdditivityPoint {
  std::string kind;      // "rd" or "random"
  double sparsity = 0;   // achieved
  double predicted = 0;  // sum of the curve values at the chosen levels
  double measured = 0;   // distortion with every layer pruned together
};

// Distortion of the network's outputs on `calibration` with all of `plan`'s masks applied at
// once, against the current network; the network is restored afterwards.
// With `batch_statistics`, the pruned network runs with each batch's own batch-norm statistics
// (as batch-norm aware curves do). `reference`: the current network's outputs on `calibration`
// (network_outputs), when the caller has them; computed here otherwise.
double joint_distortion(Network& network, const Dataset& calibration, const Plan& plan,
                        const std::string& metric, int64_t batch_size, bool batch_statistics = false,
                        const torch::Tensor& reference = {});

// rd plans at `sparsities` and `random_count` random allocations drawn from the curves' levels
// (seeded), each measured with joint_distortion.
std::vector<AdditivityPoint> additivity_study(Network& network, const Dataset& calibration,
                                              const CurveSet& curves, const std::vector<double>& sparsities,
                                              int64_t random_count, uint64_t seed, int64_t batch_size);

}  // namespace rdprune
