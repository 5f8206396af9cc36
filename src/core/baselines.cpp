#include "rdprune/baselines.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "rdprune/error.h"

namespace rdprune {

const std::vector<std::string>& baseline_methods() {
  static const std::vector<std::string> names = {"global", "lamp", "uniform", "uniform+", "erk"};
  return names;
}

bool is_shape_baseline(const std::string& method) {
  return method == "uniform" || method == "uniform+" || method == "erk";
}

void check_keep_dense(const std::vector<std::string>& keep_dense, const std::vector<std::string>& layers,
                      const std::string& in) {
  for (auto name = keep_dense.begin(); name != keep_dense.end(); ++name) {
    if (std::find(layers.begin(), layers.end(), *name) == layers.end())
      throw UsageError("keep_dense",
                       "no layer named '" + *name + "' in " + in + " (rdprune info lists them)");
    if (std::find(keep_dense.begin(), name, *name) != name)
      throw UsageError("keep_dense", "layer '" + *name + "' is named twice");
  }
}

bool is_kept_dense(const std::vector<std::string>& keep_dense, const std::string& layer) {
  return std::find(keep_dense.begin(), keep_dense.end(), layer) != keep_dense.end();
}

int64_t unpruned(const LayerInfo& layer) {
  return layer.weights -
         static_cast<int64_t>(std::llround(layer.sparsity * static_cast<double>(layer.weights)));
}

double unit_cost(BudgetKind budget, const LayerInfo& layer) {
  return budget == BudgetKind::kParams ? 1.0 : std::max(0.0, layer.flops_per_weight);
}

double total_budget(const std::vector<LayerInfo>& layers, const BaselineOptions& options) {
  int64_t weights = 0;
  double flops = 0;
  for (const auto& layer : layers) {
    weights += layer.weights;
    flops += static_cast<double>(layer.weights) * std::max(0.0, layer.flops_per_weight);
  }
  return budget_for(options.budget, options.sparsity_target, weights, flops);
}

Plan make_plan(const std::string& method, const std::vector<LayerInfo>& layers, std::vector<int64_t> kept,
               const BaselineOptions& options) {
  check_keep_dense(options.keep_dense, names_of(layers), "the model");
  const double budget = total_budget(layers, options);
  const int64_t minimum = options.allow_empty ? 0 : 1;
  std::vector<bool> dense(layers.size());
  double cost = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    dense[i] = is_kept_dense(options.keep_dense, layers[i].name);
    kept[i] = dense[i]
                  ? unpruned(layers[i])
                  : std::clamp<int64_t>(kept[i], std::min(minimum, unpruned(layers[i])), unpruned(layers[i]));
    cost += static_cast<double>(kept[i]) * unit_cost(options.budget, layers[i]);
  }
  // Over budget (from the one-weight floor or rounding): take weights from the layers that keep
  // the most, a share at a time, never from a --keep-dense layer.
  while (cost > budget) {
    size_t largest = layers.size();
    for (size_t i = 0; i < layers.size(); ++i) {
      if (!dense[i] && kept[i] > minimum && unit_cost(options.budget, layers[i]) > 0 &&
          (largest == layers.size() || kept[i] > kept[largest])) {
        largest = i;
      }
    }
    if (largest == layers.size()) {
      throw Error(
          fmt::format("{}: sparsity target {} is out of reach: every layer already keeps its minimum{}",
                      method, options.sparsity_target,
                      options.keep_dense.empty() ? "" : " and the layers kept dense all they have"));
    }
    const double unit = unit_cost(options.budget, layers[largest]);
    const auto needed = static_cast<int64_t>(std::ceil((cost - budget) / unit));
    const int64_t step = std::min<int64_t>(kept[largest] - minimum, std::max<int64_t>(1, needed));
    kept[largest] -= step;
    cost -= static_cast<double>(step) * unit;
  }
  Plan plan;
  plan.method = method;
  plan.budget = options.budget;
  plan.sparsity_target = options.sparsity_target;
  plan.allow_empty = options.allow_empty;
  for (size_t i = 0; i < layers.size(); ++i) {
    plan.layers.push_back(
        {layers[i].name, layers[i].weights, kept[i], std::max(0.0, layers[i].flops_per_weight)});
  }
  return plan;
}

Plan allocate_by_score(const std::string& method, const std::vector<LayerInfo>& layers,
                       const std::vector<double>& score, const std::vector<double>& floor_density,
                       const std::vector<double>& cap, const BaselineOptions& options) {
  const size_t n = layers.size();
  if (score.size() != n || floor_density.size() != n || cap.size() != n)
    throw Error(method + ": one score, floor and cap per layer expected");
  const double budget = total_budget(layers, options);
  auto density_at = [&](double scale, size_t i) {
    return std::clamp(scale * score[i], std::min(floor_density[i], cap[i]), cap[i]);
  };
  auto cost_at = [&](double scale) {
    double cost = 0;
    for (size_t i = 0; i < n; ++i) {
      cost += density_at(scale, i) * static_cast<double>(layers[i].weights) *
              unit_cost(options.budget, layers[i]);
    }
    return cost;
  };
  // What the rule keeps whatever the budget (uniform+'s dense first conv and 20% of the last layer):
  // when that alone is over budget the rule cannot be met, and taking weights from those layers
  // would call another rule by its name.
  double floor_cost = 0;
  for (size_t i = 0; i < n; ++i) {
    floor_cost +=
        std::floor(std::min(floor_density[i], cap[i]) * static_cast<double>(layers[i].weights) + 1e-9) *
        unit_cost(options.budget, layers[i]);
  }
  if (floor_cost > budget) {
    throw Error(fmt::format(
        "{}: the weights {} alone exceed the {} budget at sparsity {}; choose a "
        "lower target",
        method, options.keep_dense.empty() ? "its rule keeps" : "its rule and the layers kept dense keep",
        options.budget == BudgetKind::kParams ? "weights" : "FLOPs", options.sparsity_target));
  }
  // The kept cost grows with the scale; bisect for the largest scale within budget. Layers whose
  // density would pass their cap stay at the cap (dense for ERK) and the rest absorb the budget.
  double low = 0;
  double high = 1;
  while (cost_at(high) < budget && high < 1e30) high *= 2;
  for (int iteration = 0; iteration < 200; ++iteration) {
    const double mid = 0.5 * (low + high);
    (cost_at(mid) <= budget ? low : high) = mid;
  }
  std::vector<int64_t> kept(n);
  for (size_t i = 0; i < n; ++i) {
    kept[i] =
        static_cast<int64_t>(std::floor(density_at(low, i) * static_cast<double>(layers[i].weights) + 1e-9));
  }
  return make_plan(method, layers, std::move(kept), options);
}

Plan allocate_shape_baseline(const std::string& method, const std::vector<LayerInfo>& layers,
                             const BaselineOptions& options) {
  check_sparsity_target(options.sparsity_target, "sparsity_target");
  if (!is_shape_baseline(method)) throw UsageError("method", "'" + method + "' is not a shape baseline");
  if (layers.empty()) throw Error(method + ": the model has no prunable layers");
  check_keep_dense(options.keep_dense, names_of(layers), "the model");
  const size_t n = layers.size();
  std::vector<double> score(n, 1.0);
  std::vector<double> floor_density(n, 0.0);
  std::vector<double> cap(n);
  for (size_t i = 0; i < n; ++i) {
    cap[i] = static_cast<double>(unpruned(layers[i])) / static_cast<double>(layers[i].weights);
    if (is_kept_dense(options.keep_dense, layers[i].name)) floor_density[i] = cap[i];
  }
  if (method == "erk") {
    // Erdos-Renyi-Kernel, Evci et al. 2020, section 3: density ~ (sum of dims) / (product of dims).
    for (size_t i = 0; i < n; ++i) {
      const auto& shape = layers[i].shape;
      const double sum = std::accumulate(shape.begin(), shape.end(), 0.0);
      const double product = std::accumulate(shape.begin(), shape.end(), 1.0, std::multiplies<double>());
      score[i] = sum / product;
    }
  } else if (method == "uniform+") {
    // Gale et al. 2019, section 4: first conv dense, last layer keeps at least 20%.
    size_t first_conv = n;
    for (size_t i = 0; i < n && first_conv == n; ++i) {
      if (layers[i].type.rfind("conv", 0) == 0) first_conv = i;
    }
    if (first_conv < n) floor_density[first_conv] = cap[first_conv];
    floor_density[n - 1] = std::min(cap[n - 1], std::max(floor_density[n - 1], 0.2));
  }
  return allocate_by_score(method, layers, score, floor_density, cap, options);
}

}  // namespace rdprune
