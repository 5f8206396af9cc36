#include "rdprune/allocate.h"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "rdprune/error.h"

namespace rdprune {
namespace {

LayerCurve make_curve(const std::string& name, int64_t weights, double fpw, double current,
                      const std::vector<double>& grid, std::mt19937_64& rng) {
  LayerCurve curve;
  curve.name = name;
  curve.weights = weights;
  curve.flops_per_weight = fpw;
  // A real current sparsity is a whole number of pruned weights.
  current = std::floor(current * static_cast<double>(weights)) / static_cast<double>(weights);
  curve.sparsity_current = current;
  double d = 0;
  for (double s : levels_from(grid, current)) {
    curve.sparsity.push_back(s);
    curve.kept.push_back(kept_at(s, weights));
    curve.distortion.push_back(d);
    d += std::uniform_real_distribution<double>(0, 2)(rng) * (1 + s * s * 5);
  }
  return curve;
}

// Brute force over every combination of levels that the options allow.
double brute_force(const CurveSet& curves, const RdOptions& options, bool* feasible) {
  int64_t total = 0;
  double dense_flops = 0;
  for (const auto& l : curves.layers) {
    total += l.weights;
    dense_flops += static_cast<double>(l.weights) * l.flops_per_weight;
  }
  const double budget = budget_for(options.budget, options.sparsity_target, total, dense_flops);
  std::vector<size_t> index(curves.layers.size(), 0);
  double best = INFINITY;
  for (;;) {
    double cost = 0;
    double distortion = 0;
    bool ok = true;
    for (size_t i = 0; i < index.size(); ++i) {
      const auto& l = curves.layers[i];
      const size_t k = index[i];
      const double s = l.sparsity[k];
      const bool dense =
          std::find(options.keep_dense.begin(), options.keep_dense.end(), l.name) != options.keep_dense.end();
      if (dense && k != 0) ok = false;
      if (!dense && k != 0 && (s < options.min_sparsity - 1e-12 || s > options.max_sparsity + 1e-12))
        ok = false;
      if (!dense && k == 0 && s > options.max_sparsity + 1e-12) ok = false;
      if (!options.allow_empty && k != 0 && l.kept[k] == 0) ok = false;
      if (!options.kept_lower.empty() &&
          (l.kept[k] < options.kept_lower[i] || l.kept[k] > options.kept_upper[i]))
        ok = false;
      cost += options.budget == BudgetKind::kParams ? static_cast<double>(l.kept[k])
                                                    : static_cast<double>(l.kept[k]) * l.flops_per_weight;
      distortion += l.distortion[k];
    }
    if (ok && cost <= budget) best = std::min(best, distortion);
    size_t i = 0;
    while (i < index.size() && ++index[i] == curves.layers[i].sparsity.size()) index[i++] = 0;
    if (i == index.size()) break;
  }
  *feasible = std::isfinite(best);
  return best;
}

TEST(AllocateRd, MatchesBruteForceUnderEveryConstraint) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(0, 1);
  int checked = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int layers = 1 + static_cast<int>(rng() % 5);
    const auto grid = level_grid(5);  // 6 levels
    CurveSet curves;
    curves.metric = "mse";
    for (int i = 0; i < layers; ++i) {
      const double current =
          (trial % 3 == 0) ? std::floor(u(rng) * 4) / 5.0 + (u(rng) < 0.5 ? 0.05 : 0.0) : 0.0;
      curves.layers.push_back(make_curve("l" + std::to_string(i), 5 + static_cast<int64_t>(rng() % 60),
                                         std::floor(1 + u(rng) * 50), current, grid, rng));
    }
    RdOptions options;
    options.budget = trial % 2 == 0 ? BudgetKind::kParams : BudgetKind::kFlops;
    options.sparsity_target = std::floor(u(rng) * 100) / 100;
    if (trial % 4 == 1) options.min_sparsity = 0.2;
    if (trial % 5 == 2) options.max_sparsity = 0.8;
    if (trial % 7 == 3) options.keep_dense = {"l0"};
    options.allow_empty = trial % 6 == 5;
    if (trial % 8 == 6) {  // a trust region: per-layer bounds on the kept count
      for (const auto& l : curves.layers) {
        const auto lower = static_cast<int64_t>(u(rng) * static_cast<double>(l.weights));
        options.kept_lower.push_back(lower);
        options.kept_upper.push_back(lower + static_cast<int64_t>(u(rng) * static_cast<double>(l.weights)));
      }
    }
    bool feasible = false;
    const double expected = brute_force(curves, options, &feasible);
    if (!feasible) {
      EXPECT_THROW(allocate_rd(curves, options), Error) << "trial " << trial;
      continue;
    }
    const Plan plan = allocate_rd(curves, options);
    ++checked;
    ASSERT_TRUE(plan.predicted_distortion.has_value());
    if (options.budget == BudgetKind::kParams) {
      EXPECT_NEAR(*plan.predicted_distortion, expected, 1e-9) << "trial " << trial;
      EXPECT_GE(plan.sparsity_achieved(), options.sparsity_target - 1e-12);
    } else {
      // Real-valued FLOPs costs: feasible always, optimal within the cell rounding.
      EXPECT_GE(*plan.predicted_distortion, expected - 1e-9) << "trial " << trial;
      EXPECT_LE(*plan.predicted_distortion, expected + 1e-6 + 1e-3 * expected) << "trial " << trial;
      EXPECT_GE(plan.flops_sparsity_achieved(), options.sparsity_target - 1e-12);
    }
    for (size_t i = 0; i < plan.layers.size(); ++i) {
      EXPECT_GE(plan.layers[i].sparsity(), curves.layers[i].sparsity_current - 1e-12);  // masks only grow
      if (!options.kept_lower.empty()) {
        EXPECT_GE(plan.layers[i].kept, options.kept_lower[i]);
        EXPECT_LE(plan.layers[i].kept, options.kept_upper[i]);
      }
      if (!options.allow_empty) {
        EXPECT_GT(plan.layers[i].kept, 0);
      }
    }
  }
  EXPECT_GT(checked, 150);
}

TEST(AllocateRd, TargetsOutsideTheRangeAreUsageErrors) {
  std::mt19937_64 rng(1);
  CurveSet curves;
  curves.metric = "mse";
  curves.layers.push_back(make_curve("a", 100, 1, 0, level_grid(10), rng));
  RdOptions options;
  for (double bad : {-0.1, 1.0, 1.5, std::nan("")}) {
    options.sparsity_target = bad;
    EXPECT_THROW(allocate_rd(curves, options), UsageError) << bad;
  }
  options.sparsity_target = 0.5;
  options.solver = "simplex";
  EXPECT_THROW(allocate_rd(curves, options), UsageError);
}

TEST(AllocateRd, KeptBoundsMustNameEveryLayer) {
  std::mt19937_64 rng(3);
  CurveSet curves;
  curves.metric = "mse";
  curves.layers.push_back(make_curve("a", 100, 1, 0, level_grid(10), rng));
  curves.layers.push_back(make_curve("b", 100, 1, 0, level_grid(10), rng));
  RdOptions options;
  options.sparsity_target = 0.5;
  options.kept_lower = {0};
  options.kept_upper = {100};
  EXPECT_THROW(allocate_rd(curves, options), Error);
}

TEST(AllocateRd, NeverEmptiesALayerUnlessAllowed) {
  std::mt19937_64 rng(2);
  CurveSet curves;
  curves.metric = "mse";
  curves.layers.push_back(make_curve("big", 1000, 1, 0, level_grid(100), rng));
  curves.layers.push_back(make_curve("small", 10, 1, 0, level_grid(100), rng));
  curves.layers[1].distortion.assign(curves.layers[1].distortion.size(), 0.0);  // free to prune
  RdOptions options;
  options.sparsity_target = 0.98;
  const Plan plan = allocate_rd(curves, options);
  EXPECT_GT(plan.layers[1].kept, 0);
  options.allow_empty = true;
  EXPECT_EQ(allocate_rd(curves, options).layers[1].kept, 0);
}

TEST(AllocateRd, LagrangeIsNeverBetterThanTheDp) {
  std::mt19937_64 rng(3);
  CurveSet curves;
  curves.metric = "mse";
  for (int i = 0; i < 20; ++i)
    curves.layers.push_back(make_curve("l" + std::to_string(i), 1000 + 997 * i, 1, 0, level_grid(100), rng));
  for (double target : {0.5, 0.8, 0.9, 0.95}) {
    RdOptions options;
    options.sparsity_target = target;
    const double dp = *allocate_rd(curves, options).predicted_distortion;
    options.solver = "lagrange";
    const Plan lagrange = allocate_rd(curves, options);
    EXPECT_GE(*lagrange.predicted_distortion, dp - 1e-9);
    EXPECT_GE(lagrange.sparsity_achieved(), target);
  }
}

TEST(AllocateRd, FrontierIsMonotoneAndMatchesSingleSolves) {
  std::mt19937_64 rng(4);
  CurveSet curves;
  curves.metric = "mse";
  for (int i = 0; i < 4; ++i)
    curves.layers.push_back(make_curve("l" + std::to_string(i), 50 + 10 * i, 1, 0, level_grid(20), rng));
  RdOptions options;
  options.sparsity_target = 0.7;
  std::vector<FrontierPoint> frontier;
  const Plan plan = allocate_rd(curves, options, &frontier);
  ASSERT_FALSE(frontier.empty());
  for (size_t i = 1; i < frontier.size(); ++i) EXPECT_LE(frontier[i].distortion, frontier[i - 1].distortion);
  const double budget = std::floor(0.3 * 260);
  const auto at = std::find_if(frontier.begin(), frontier.end(),
                               [&](const FrontierPoint& p) { return p.budget == budget; });
  ASSERT_NE(at, frontier.end());
  EXPECT_DOUBLE_EQ(at->distortion, *plan.predicted_distortion);
}

}  // namespace
}  // namespace rdprune
