// Baseline allocators that need only layer shapes: uniform, uniform+ (Gale et al. 2019) and ERK
// (Evci et al. 2020). Torch-free. The magnitude-based baselines (global, lamp) live on the torch
// side (rdprune/magnitude_baselines.h). All write the same plans as rd.
#pragma once

#include <string>
#include <vector>

#include "rdprune/layer.h"
#include "rdprune/plan.h"

namespace rdprune {

struct BaselineOptions {
  BudgetKind budget = BudgetKind::kParams;
  double sparsity_target = 0.9;
  bool allow_empty = false;  // allow a layer to lose every weight
};

// Names accepted by --method besides rd.
const std::vector<std::string>& baseline_methods();
bool is_shape_baseline(const std::string& method);  // uniform, uniform+, erk

// The weights a layer still has: its weights less those its current sparsity has pruned.
int64_t unpruned(const LayerInfo& layer);

// Densities clamp(scale * score_i, floor_i, cap_i) with the scale solved by bisection so the kept
// cost meets the budget, then rounded down to whole weights (never above budget; at least one
// weight per layer unless allow_empty; never more than a layer's unpruned weights). Densities are
// fractions of a layer's weights; a cap above the layer's unpruned share is clamped to it, the
// budget it frees left unused. O(200 * layers).
Plan allocate_by_score(const std::string& method, const std::vector<LayerInfo>& layers,
                       const std::vector<double>& score, const std::vector<double>& floor_density,
                       const std::vector<double>& cap, const BaselineOptions& options);

// The shape baselines: allocate_by_score with uniform scores (uniform, uniform+ with its first
// layer dense and last layer floor) or ERK's. `layers[i].sparsity` is the layer's current sparsity
// (masks only grow).
Plan allocate_shape_baseline(const std::string& method, const std::vector<LayerInfo>& layers,
                             const BaselineOptions& options);

// Turns per-layer kept counts into a plan that meets the budget: lifts empty layers to one weight
// (unless allowed), then takes weights back from the largest layers until the budget holds.
// Throws Error if the budget cannot be met.
Plan make_plan(const std::string& method, const std::vector<LayerInfo>& layers, std::vector<int64_t> kept,
               const BaselineOptions& options);

}  // namespace rdprune
