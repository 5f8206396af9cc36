// The rate-distortion allocator: one level per layer minimising the summed curve distortion
// under a weight or FLOPs budget (docs/design.md, "The method", step 3). Torch-free.
#pragma once

#include <string>
#include <vector>

#include "rdprune/baselines.h"
#include "rdprune/curves.h"
#include "rdprune/plan.h"

namespace rdprune {

struct RdOptions {
  BudgetKind budget = BudgetKind::kParams;
  double sparsity_target = 0.9;           // of weights or FLOPs, in [0, 1)
  double min_sparsity = 0.0;              // every layer at least this sparse
  double max_sparsity = 1.0;              // every layer at most this sparse
  std::vector<std::string> keep_dense;    // layers left at their current sparsity
  bool allow_empty = false;               // allow a layer to lose every weight
  std::string solver = "dp";              // dp | lagrange
  int64_t resolution = int64_t{1} << 16;  // DP budget cells (see DpOptions)
  // Per layer, the fewest and most weights a chosen level may keep (refinement's trust region);
  // empty: no bounds.
  std::vector<int64_t> kept_lower;
  std::vector<int64_t> kept_upper;
};

void validate(const RdOptions& options);

// The budget and constraints of `options` as the baselines take them, at `target`.
BaselineOptions baseline_options(const RdOptions& options, double target);

struct FrontierPoint {
  double budget = 0;      // kept weights (params) or kept FLOPs (flops)
  double sparsity = 0;    // 1 - budget / dense
  double distortion = 0;  // minimal predicted distortion within that budget
};

// Chooses every layer's level. Levels below a layer's current sparsity are never chosen (curves
// only hold levels at or above it), so iterative pruning only grows masks. Throws Error when the
// constraints cannot meet the budget. When `frontier` is set, also returns the optimal
// distortion for every budget cell from fully pruned (as constraints allow) to dense.
Plan allocate_rd(const CurveSet& curves, const RdOptions& options,
                 std::vector<FrontierPoint>* frontier = nullptr);

// Whether a plan keeps rd's constraints: layers kept dense at their current sparsity, every other
// layer within [min_sparsity, max_sparsity] (a layer left at its current sparsity may stay below
// the minimum, as rd's own levels allow). `layers[i].sparsity` is the current sparsity.
bool honours(const Plan& plan, const std::vector<LayerInfo>& layers, const RdOptions& options);

// `plan` with `fraction` of layer `from`'s kept weights given up and the budget they cost (weights
// or FLOPs) spent on layer `to`'s weights; the densities are then scaled together to meet the
// options' budget within the constraints (allocate_by_score). Throws Error if the budget cannot be
// met. O(200 * layers).
Plan exchange_plan(const Plan& plan, size_t from, size_t to, double fraction,
                   const std::vector<LayerInfo>& layers, const RdOptions& options);

}  // namespace rdprune
