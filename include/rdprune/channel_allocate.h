// Allocation at channel granularity (docs/channels.md): one kept-channel count per channel group
// under a weight or FLOPs budget, whose cost couples neighbouring groups. Torch-free.
#pragma once

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
// channels, at least one, the largest fraction within the budget.
Plan allocate_channels_uniform(const ChannelCostModel& model, const RdOptions& options);

}  // namespace rdprune
