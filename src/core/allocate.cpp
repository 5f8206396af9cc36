#include "rdprune/allocate.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "rdprune/baselines.h"
#include "rdprune/error.h"
#include "rdprune/knapsack.h"

namespace rdprune {

void validate(const RdOptions& options) {
  check_sparsity_target(options.sparsity_target, "sparsity_target");
  if (!(options.min_sparsity >= 0 && options.min_sparsity <= 1))
    throw UsageError("min_sparsity", "expected [0, 1]");
  if (!(options.max_sparsity >= 0 && options.max_sparsity <= 1))
    throw UsageError("max_sparsity", "expected [0, 1]");
  if (options.min_sparsity > options.max_sparsity) throw UsageError("min_sparsity", "is above max_sparsity");
  if (options.solver != "dp" && options.solver != "lagrange") {
    throw UsageError("solver", "expected dp or lagrange, got '" + options.solver + "'");
  }
  if (options.resolution < 1 || options.resolution > (int64_t{1} << 26)) {
    throw UsageError("resolution", "expected a cell count in [1, 67108864]");
  }
}

BaselineOptions baseline_options(const RdOptions& options, double target) {
  return BaselineOptions{options.budget, target, options.allow_empty, options.keep_dense};
}

namespace {

bool kept_dense(const RdOptions& options, const std::string& name) {
  return is_kept_dense(options.keep_dense, name);
}

struct Allowed {
  std::vector<size_t> level;  // curve level index per choice
  std::vector<Choice> choices;
};

double cost_of(BudgetKind budget, const LayerCurve& layer, size_t k) {
  const auto kept = static_cast<double>(layer.kept[k]);
  return budget == BudgetKind::kParams ? kept : kept * layer.flops_per_weight;
}

std::vector<Allowed> allowed_levels(const CurveSet& curves, const RdOptions& options) {
  std::vector<Allowed> allowed(curves.layers.size());
  const bool bounded = !options.kept_lower.empty() || !options.kept_upper.empty();
  if (bounded && (options.kept_lower.size() != curves.layers.size() ||
                  options.kept_upper.size() != curves.layers.size())) {
    throw Error("allocate: kept-weight bounds do not match the curves' layers");
  }
  check_keep_dense(options.keep_dense, names_of(curves.layers), "the curves");
  for (size_t i = 0; i < curves.layers.size(); ++i) {
    const LayerCurve& layer = curves.layers[i];
    const bool dense = kept_dense(options, layer.name);
    for (size_t k = 0; k < layer.sparsity.size(); ++k) {
      const double s = layer.sparsity[k];
      const bool is_current = k == 0;  // the first level is the layer's current sparsity
      bool ok;
      if (dense) {
        ok = is_current;
      } else {
        // A layer already sparser than the minimum may stay where it is.
        ok = (s + 1e-12 >= options.min_sparsity || is_current) && s <= options.max_sparsity + 1e-12 &&
             (options.allow_empty || layer.kept[k] > 0 || is_current);
      }
      if (bounded && (layer.kept[k] < options.kept_lower[i] || layer.kept[k] > options.kept_upper[i]))
        ok = false;
      if (!ok) continue;
      allowed[i].level.push_back(k);
      allowed[i].choices.push_back({cost_of(options.budget, layer, k), layer.distortion[k]});
    }
    if (allowed[i].choices.empty()) {
      throw Error(
          fmt::format("layer {}: no level satisfies the constraints (current sparsity {:.4f}, "
                      "min {:.4f}, max {:.4f})",
                      layer.name, layer.sparsity.front(), options.min_sparsity, options.max_sparsity));
    }
  }
  return allowed;
}

}  // namespace

Plan allocate_rd(const CurveSet& curves, const RdOptions& options, std::vector<FrontierPoint>* frontier) {
  validate(options);
  validate(curves, "curves");
  const std::vector<Allowed> allowed = allowed_levels(curves, options);
  std::vector<std::vector<Choice>> groups;
  for (const auto& a : allowed) groups.push_back(a.choices);

  Plan plan;
  plan.method = "rd";
  plan.budget = options.budget;
  plan.sparsity_target = options.sparsity_target;
  plan.solver = options.solver;
  plan.fingerprint = curves.fingerprint;
  plan.allow_empty = options.allow_empty;
  int64_t total_weights = 0;
  double dense_flops = 0;
  for (const auto& layer : curves.layers) {
    total_weights += layer.weights;
    dense_flops += static_cast<double>(layer.weights) * layer.flops_per_weight;
  }
  const double budget = budget_for(options.budget, options.sparsity_target, total_weights, dense_flops);

  const KnapsackSolution solution = options.solver == "lagrange"
                                        ? solve_lagrange(groups, budget)
                                        : solve_dp(groups, budget, DpOptions{options.resolution});
  if (!solution.feasible) {
    double minimum = 0;
    for (const auto& group : groups) {
      double cheapest = group.front().cost;
      for (const auto& choice : group) cheapest = std::min(cheapest, choice.cost);
      minimum += cheapest;
    }
    throw Error(
        fmt::format("sparsity target {} is out of reach under the constraints: the layers keep at least "
                    "{:.0f} {} but the budget is {:.0f}{}",
                    options.sparsity_target, minimum, to_string(options.budget), budget,
                    options.allow_empty ? "" : " (allowing empty layers lets a layer lose every weight)"));
  }
  for (size_t i = 0; i < curves.layers.size(); ++i) {
    const LayerCurve& layer = curves.layers[i];
    const size_t k = allowed[i].level[solution.choice[i]];
    plan.layers.push_back({layer.name, layer.weights, layer.kept[k], layer.flops_per_weight});
  }
  plan.predicted_distortion = solution.distortion;

  if (frontier) {
    std::vector<double> row;
    double unit = 1;
    double min_cost = 0;
    const double dense =
        options.budget == BudgetKind::kParams ? static_cast<double>(total_weights) : dense_flops;
    DpOptions dp{options.resolution, &row, &unit, &min_cost};
    solve_dp(groups, dense, dp);
    frontier->clear();
    for (size_t b = 0; b < row.size(); ++b) {
      if (!std::isfinite(row[b])) continue;
      const double cost = min_cost + static_cast<double>(b) * unit;
      frontier->push_back({cost, dense > 0 ? 1.0 - cost / dense : 0.0, row[b]});
    }
  }
  return plan;
}

bool honours(const Plan& plan, const std::vector<LayerInfo>& layers, const RdOptions& options) {
  if (plan.layers.size() != layers.size()) return false;
  for (size_t i = 0; i < layers.size(); ++i) {
    const double s = plan.layers[i].sparsity();
    const bool unchanged = std::abs(s - layers[i].sparsity) < 1e-9;
    if (kept_dense(options, layers[i].name)) {
      if (!unchanged) return false;
    } else if ((s + 1e-12 < options.min_sparsity && !unchanged) || s > options.max_sparsity + 1e-12) {
      return false;
    }
  }
  return true;
}

namespace {

// allocate_by_score under rd's constraints: --keep-dense layers stay at their current density,
// every other layer within [1 - max_sparsity, 1 - min_sparsity] of its weights and never above
// what it has left.
Plan allocate_within(const std::vector<LayerInfo>& layers, const std::vector<double>& score,
                     const RdOptions& options) {
  const size_t n = layers.size();
  std::vector<double> floor_density(n);
  std::vector<double> cap(n);
  for (size_t i = 0; i < n; ++i) {
    const double current = static_cast<double>(unpruned(layers[i])) / static_cast<double>(layers[i].weights);
    if (kept_dense(options, layers[i].name)) {
      cap[i] = floor_density[i] = current;
    } else {
      cap[i] = std::min(current, 1.0 - options.min_sparsity);
      floor_density[i] = std::min(cap[i], 1.0 - options.max_sparsity);
    }
  }
  return allocate_by_score("rd", layers, score, floor_density, cap,
                           baseline_options(options, options.sparsity_target));
}

double cost_per_weight(BudgetKind budget, const LayerInfo& layer) {
  return budget == BudgetKind::kFlops ? layer.flops_per_weight : 1.0;
}

}  // namespace

Plan exchange_plan(const Plan& plan, size_t from, size_t to, double fraction,
                   const std::vector<LayerInfo>& layers, const RdOptions& options) {
  if (plan.layers.size() != layers.size())
    throw Error("exchange: the plan does not match the model's layers");
  if (from >= layers.size() || to >= layers.size() || from == to)
    throw Error("exchange: expected two different layers");
  if (!(fraction > 0 && fraction < 1)) throw Error("exchange: expected a fraction in (0, 1)");
  std::vector<double> kept(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) kept[i] = static_cast<double>(plan.layers[i].kept);
  for (const size_t i : {from, to}) {
    if (!(cost_per_weight(options.budget, layers[i]) > 0))
      throw Error("exchange: layer '" + layers[i].name + "' has no known cost per weight");
  }
  const double moved = fraction * kept[from];
  kept[from] -= moved;
  // The budget `moved` weights of `from` cost, spent on `to`'s weights.
  kept[to] +=
      moved * cost_per_weight(options.budget, layers[from]) / cost_per_weight(options.budget, layers[to]);
  std::vector<double> score(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) score[i] = kept[i] / static_cast<double>(layers[i].weights);
  return allocate_within(layers, score, options);
}

}  // namespace rdprune
