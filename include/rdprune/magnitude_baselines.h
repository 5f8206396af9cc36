// Baselines that rank weights across layers by their values: global magnitude and LAMP.
#pragma once

#include "rdprune/layering.h"

#include "rdprune/baselines.h"
#include "rdprune/network.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

// global: one magnitude threshold over all prunable weights (torch.nn.utils.prune.global_unstructured
// with L1). lamp: LAMP score, Lee et al. ICLR 2021, eq. (2): within a layer sorted ascending by w^2,
// score(u) = w_u^2 / sum_{v >= u} w_v^2; the globally lowest scores are pruned.
// Already-pruned weights go first; unless allow_empty, each layer's largest weight is kept.
Plan allocate_magnitude_baseline(const std::string& method, Network& network,
                                 const std::vector<LayerInfo>& infos, const BaselineOptions& options);

// Any baseline by name (global, lamp, uniform, uniform+, erk).
Plan allocate_baseline(const std::string& method, Network& network, const std::vector<LayerInfo>& infos,
                       const BaselineOptions& options);

}  // namespace rdprune
