// Baseline allocators that need only layer shapes: uniform, uniform+ (Gale et al. 2019) and ERK
// (Evci et al. 2020). Torch-free. The magnitude-based baselines (global, lamp) live on the torch
// side (rdprune/magnitude_baselines.h). All write the same plans as rd.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "rdprune/layer.h"
#include "rdprune/plan.h"

namespace rdprune {

struct BaselineOptions {
  BaselineOptions(BudgetKind budget_kind = BudgetKind::kParams, double target = 0.9,
                  bool empty_allowed = false, std::vector<std::string> dense_layers = {})
      : budget(budget_kind),
        sparsity_target(target),
        allow_empty(empty_allowed),
        keep_dense(std::move(dense_layers)) {}
  BudgetKind budget;
  double sparsity_target;
  bool allow_empty;  // allow a layer to lose every weight
  // Layers left at their current sparsity (keep_dense): every rule allocates the budget that is
  // left among the other layers, so that a comparison keeps the same layers dense for every method.
  std::vector<std::string> keep_dense;
};

// Throws UsageError naming keep_dense for a name not among `layers` or named twice (`in` says
// whose: "the curves", "the model").
void check_keep_dense(const std::vector<std::string>& keep_dense, const std::vector<std::string>& layers,
                      const std::string& in);
bool is_kept_dense(const std::vector<std::string>& keep_dense, const std::string& layer);
// The names of any layers that have one: curves, plan or census entries, a network's layers.
template <typename Layers>
std::vector<std::string> names_of(const Layers& layers) {
  std::vector<std::string> names;
  for (const auto& layer : layers) names.push_back(layer.name);
  return names;
}

// The baseline methods: global, lamp, uniform, uniform+, erk.
const std::vector<std::string>& baseline_methods();
bool is_shape_baseline(const std::string& method);  // uniform, uniform+, erk

// The weights a layer still has: its weights less those its current sparsity has pruned.
int64_t unpruned(const LayerInfo& layer);
// What keeping one of the layer's weights costs under `budget`: 1, or its FLOPs per weight.
double unit_cost(BudgetKind budget, const LayerInfo& layer);
// The kept cost `options` allow over `layers`: weights or FLOPs at the target.
double total_budget(const std::vector<LayerInfo>& layers, const BaselineOptions& options);

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
// (unless allowed) and layers kept dense to their unpruned weights, then takes weights back from
// the largest other layers until the budget holds.
// Throws Error if the budget cannot be met.
Plan make_plan(const std::string& method, const std::vector<LayerInfo>& layers, std::vector<int64_t> kept,
               const BaselineOptions& options);

}  // namespace rdprune
