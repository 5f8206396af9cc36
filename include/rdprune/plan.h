// Plans: a kept-weight count per layer, written as `rdprune.plan/1`. Torch-free.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rdprune/budget.h"
#include "rdprune/channel_cost.h"
#include "rdprune/layer.h"

namespace rdprune {

inline constexpr const char* kPlanSchema = "rdprune.plan/1";

struct PlanLayer {
  std::string name;
  int64_t weights = 0;
  int64_t kept = 0;
  double flops_per_weight = 0;
  double sparsity() const {
    return weights > 0 ? 1.0 - static_cast<double>(kept) / static_cast<double>(weights) : 0;
  }
};

struct Plan {
  std::string method;  // rd | select | global | lamp | uniform | uniform+ | erk | owl | alphapruning
  // Which weights of a layer prune applies it to: magnitude | wanda. Channel plans: which channels of
  // a group: magnitude (filter L1 norm) | bn_scale (the batch norm's absolute scale).
  std::string criterion = "magnitude";
  BudgetKind budget = BudgetKind::kParams;
  double sparsity_target = 0;  // of weights (params budget) or of FLOPs (flops budget)
  std::optional<double> predicted_distortion;
  std::string solver;        // for rd: dp | lagrange
  std::string fingerprint;   // of the model the plan was made for, when known
  bool allow_empty = false;  // made allowing empty layers: a layer may lose every weight
  // weight: `layers` are the model's layers and their kept weights. channel: they are its channel
  // groups (docs/channels.md) and their kept channels (PlanLayer::weights counts channels), and
  // the weight and FLOPs totals below come from `channel_costs`.
  std::string granularity = "weight";
  ChannelCostModel channel_costs;  // channel granularity only
  std::vector<PlanLayer> layers;
  std::vector<int64_t> kept_channels() const;  // per group, channel granularity

  int64_t total_weights() const;
  int64_t kept_weights() const;
  double dense_flops() const;
  double kept_flops() const;
  double sparsity_achieved() const;        // 1 - kept / total weights
  double flops_sparsity_achieved() const;  // 1 - kept / dense FLOPs
  // Channel plans with measured latency tables (ChannelCostModel::has_latency); else 0.
  double dense_latency() const;
  double kept_latency() const;
  double latency_sparsity_achieved() const;  // 1 - kept / dense latency
};

// Budget for a target: params: floor((1 - S) * total weights); flops: (1 - S) * dense FLOPs.
// Throws UsageError for latency, which only channel plans take.
double budget_for(BudgetKind budget, double sparsity_target, int64_t total_weights, double dense_flops);

// Throws UsageError naming `option` unless 0 <= target < 1 (and finite).
void check_sparsity_target(double sparsity_target, const std::string& option);

void validate(const Plan& plan, const std::string& source);
std::string to_json(const Plan& plan);
Plan plan_from_json(const std::string& text, const std::string& source);

// Checks that a plan was made for a model with these layers (names, order, sizes); throws Error.
void check_plan_matches(const Plan& plan, const std::vector<LayerInfo>& layers, const std::string& source);

// Throws Error when the plan takes every remaining weight of a layer that has some, unless the plan
// allows it (Plan::allow_empty) or `allow_empty` is given: a layer with no weights cuts the network.
void check_no_layer_emptied(const Plan& plan, const std::vector<LayerInfo>& layers, bool allow_empty,
                            const std::string& source);

}  // namespace rdprune
