#include "rdprune/knapsack.h"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

namespace rdprune {
namespace {

std::vector<std::vector<Choice>> random_groups(std::mt19937_64& rng, bool integral_costs) {
  std::uniform_int_distribution<int> layers(1, 5);
  std::uniform_int_distribution<int> levels(1, 6);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<std::vector<Choice>> groups(static_cast<size_t>(layers(rng)));
  for (auto& group : groups) {
    const int n = levels(rng);
    for (int k = 0; k < n; ++k) {
      const double cost = integral_costs ? std::floor(unit(rng) * 40) : unit(rng) * 40 * (1 + unit(rng) * 30);
      group.push_back({cost, unit(rng) * 10});
    }
  }
  return groups;
}

double total_cost(const std::vector<std::vector<Choice>>& groups, const KnapsackSolution& s) {
  double cost = 0;
  for (size_t i = 0; i < groups.size(); ++i) cost += groups[i][s.choice[i]].cost;
  return cost;
}

TEST(Knapsack, DpEqualsBruteForceOnRandomIntegerInstances) {
  std::mt19937_64 rng(1);
  int feasible = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const auto groups = random_groups(rng, /*integral_costs=*/true);
    const double budget = std::floor(std::uniform_real_distribution<double>(0, 120)(rng));
    const auto exact = solve_brute_force(groups, budget);
    const auto dp = solve_dp(groups, budget);
    ASSERT_EQ(dp.feasible, exact.feasible) << "trial " << trial;
    if (!exact.feasible) continue;
    ++feasible;
    EXPECT_NEAR(dp.distortion, exact.distortion, 1e-9) << "trial " << trial;
    EXPECT_LE(total_cost(groups, dp), budget);
    EXPECT_DOUBLE_EQ(dp.cost, total_cost(groups, dp));
  }
  EXPECT_GT(feasible, 200);
}

TEST(Knapsack, RealValuedCostsNeverExceedTheBudgetAndStayNearOptimal) {
  // FLOPs budgets: real costs are rounded up to cells, so the DP is feasible by construction and
  // the leftover pass recovers most of what the rounding cost.
  std::mt19937_64 rng(2);
  double worst_gap = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const auto groups = random_groups(rng, /*integral_costs=*/false);
    const double budget = std::uniform_real_distribution<double>(0, 3000)(rng);
    const auto exact = solve_brute_force(groups, budget);
    DpOptions options;
    options.resolution = 4096;
    const auto dp = solve_dp(groups, budget, options);
    if (!exact.feasible) {
      EXPECT_FALSE(dp.feasible);
      continue;
    }
    ASSERT_TRUE(dp.feasible) << "trial " << trial;
    EXPECT_LE(total_cost(groups, dp), budget);
    EXPECT_GE(dp.distortion, exact.distortion - 1e-9);
    worst_gap = std::max(worst_gap, dp.distortion - exact.distortion);
  }
  EXPECT_LT(worst_gap, 0.5);
}

TEST(Knapsack, CoarseResolutionStaysFeasible) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const auto groups = random_groups(rng, true);
    const double budget = std::floor(std::uniform_real_distribution<double>(0, 120)(rng));
    DpOptions options;
    options.resolution = 7;  // far coarser than the costs
    const auto dp = solve_dp(groups, budget, options);
    const auto exact = solve_brute_force(groups, budget);
    ASSERT_EQ(dp.feasible, exact.feasible);
    if (dp.feasible) {
      EXPECT_LE(total_cost(groups, dp), budget);
      EXPECT_GE(dp.distortion, exact.distortion - 1e-9);
    }
  }
}

TEST(Knapsack, FrontierGivesTheOptimumForEveryBudget) {
  std::mt19937_64 rng(4);
  for (int trial = 0; trial < 50; ++trial) {
    const auto groups = random_groups(rng, true);
    double total = 0;
    for (const auto& group : groups) {
      double most = 0;
      for (const auto& c : group) most = std::max(most, c.cost);
      total += most;
    }
    std::vector<double> frontier;
    double unit = 0;
    double min_cost = 0;
    DpOptions options;
    options.frontier = &frontier;
    options.frontier_unit = &unit;
    options.frontier_min_cost = &min_cost;
    solve_dp(groups, total, options);
    ASSERT_EQ(unit, 1.0);
    for (size_t b = 0; b < frontier.size(); ++b) {
      const auto exact = solve_brute_force(groups, min_cost + static_cast<double>(b));
      ASSERT_TRUE(exact.feasible);
      EXPECT_NEAR(frontier[b], exact.distortion, 1e-9) << "trial " << trial << " budget " << b;
    }
  }
}

TEST(Knapsack, LagrangeIsFeasibleAndBoundsTheOptimum) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const auto groups = random_groups(rng, true);
    const double budget = std::floor(std::uniform_real_distribution<double>(0, 120)(rng));
    const auto exact = solve_brute_force(groups, budget);
    double lower = 0;
    const auto lagrange = solve_lagrange(groups, budget, &lower);
    ASSERT_EQ(lagrange.feasible, exact.feasible);
    if (!exact.feasible) continue;
    EXPECT_LE(total_cost(groups, lagrange), budget);
    EXPECT_GE(lagrange.distortion, exact.distortion - 1e-9);
    EXPECT_LE(lower, exact.distortion + 1e-9);
  }
}

TEST(Knapsack, HandComputedExample) {
  // Two layers, budget 5. Combinations within budget: (dense, pruned) cost 5, d = 0 + 4 = 4;
  // (pruned, dense) cost 5, d = 5 + 1 = 6; (pruned, pruned) cost 2, d = 9. Best: the first.
  const std::vector<std::vector<Choice>> groups = {{{4, 0}, {1, 5}}, {{4, 1}, {1, 4}}};
  const auto dp = solve_dp(groups, 5);
  ASSERT_TRUE(dp.feasible);
  EXPECT_EQ(dp.choice, (std::vector<size_t>{0, 1}));
  EXPECT_DOUBLE_EQ(dp.distortion, 4);
  EXPECT_FALSE(solve_dp(groups, 1).feasible);
}

TEST(Knapsack, AGroupLargerThanTheBudgetIsNoProblem) {
  // One layer's dense cost alone exceeds the budget; its cheap levels still fit.
  const std::vector<std::vector<Choice>> groups = {{{1000000, 0}, {10, 3}, {0, 9}}, {{5, 0}, {2, 1}}};
  const auto dp = solve_dp(groups, 12);
  ASSERT_TRUE(dp.feasible);
  EXPECT_EQ(dp.choice, (std::vector<size_t>{1, 1}));
}

}  // namespace
}  // namespace rdprune

namespace rdprune {
namespace {

TEST(Knapsack, TwoPassDpStaysWithinATenthOfAPercentOfTheExactOptimum) {
  // Large enough that solve_dp takes its coarse-then-fine path; the frontier option forces the
  // exact single pass, which is the reference.
  std::mt19937_64 rng(6);
  std::uniform_real_distribution<double> u(0, 1);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<std::vector<Choice>> groups;
    double total = 0;
    for (int i = 0; i < 25; ++i) {
      const double weights = std::floor(200 + u(rng) * 3000);
      const double a = u(rng) * 5;
      const double b = 2 + 6 * u(rng);
      std::vector<Choice> group;
      for (int k = 0; k < 100; ++k) {
        const double s = k / 100.0;
        group.push_back({weights - std::floor(s * weights), a * (std::exp(b * s) - 1)});
      }
      groups.push_back(group);
      total += weights;
    }
    const double budget = std::floor(total * (0.05 + 0.4 * u(rng)));
    std::vector<double> frontier;
    DpOptions exact_options;
    exact_options.frontier = &frontier;
    const auto exact = solve_dp(groups, budget, exact_options);
    const auto fast = solve_dp(groups, budget);
    ASSERT_TRUE(fast.feasible);
    EXPECT_LE(fast.cost, budget);
    EXPECT_LE(fast.distortion, exact.distortion * 1.001 + 1e-12) << "trial " << trial;
    EXPECT_GE(fast.distortion, exact.distortion - 1e-9);
  }
}

}  // namespace
}  // namespace rdprune
