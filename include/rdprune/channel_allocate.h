// Allocation at channel granularity (docs/channels.md): one kept-channel count per channel group
// under a weight or FLOPs budget, whose cost couples neighbouring groups. Torch-free.
#pragma once

#include <vector>

#include "rdprune/allocate.h"
#include "rdprune/channel_cost.h"
#include "rdprune/curves.h"
#include "rdprune/plan.h"

namespace rdprune {

// rd over channel curves: minimises the summed group distortions subject to the exact cost
// (channel_cost) within the budget. The cost of a layer between two groups is the product of their
// widths, so each round solves the exact knapsack DP with every group's cost linearised at its
// neighbours' widths from the round before, its DP budget bisected so that the exact cost fits,
// until the widths repeat; the best round is then polished by local search on the exact cost
// (docs/channels.md). Never exceeds the budget; throws Error when even the narrowest widths the
// levels allow cost more than it.
Plan allocate_channels_rd(const CurveSet& curves, const RdOptions& options);

// Li et al. 2017's uniform rule: every group (but those kept dense) keeps the same fraction of its
// channels, at least one, the largest fraction within the budget. Per-group sparsity bounds are
// refused.
Plan allocate_channels_uniform(const ChannelCostModel& model, const RdOptions& options);

// Global ranking (Torch-Pruning's global pruning, Fang et al. 2023): channels go one at a time,
// lowest first across all groups, until the exact cost fits the budget. `scores` holds every group's
// channel scores (channel_scores by magnitude: filter L1 norms), each group's divided by their mean
// so that groups of different scale compete (Torch-Pruning's default normaliser); negative scores
// mark channels out of use, which go first. Ties go to the earlier group. A group keeps its
// highest-scored channel; groups kept dense keep all. Per-group sparsity bounds are refused.
Plan allocate_channels_global(const ChannelCostModel& model, const std::vector<std::vector<double>>& scores,
                              const RdOptions& options);

// Network slimming's pruning rule (Liu et al. 2017): the same global ranking by the raw absolute
// batch-norm scales of the channels (channel_scores by bn_scale), unnormalised. The plan's
// criterion is bn_scale: prune removes each group's channels of the smallest scales.
Plan allocate_channels_slimming(const ChannelCostModel& model, const std::vector<std::vector<double>>& scores,
                                const RdOptions& options);

}  // namespace rdprune
