// Multiple-choice knapsack: pick one choice per group to minimise total distortion subject to
// total cost <= budget. The allocation problem of docs/design.md, "The method", step 3. Torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rdprune {

struct Choice {
  double cost = 0;        // >= 0 (kept weights, or kept FLOPs)
  double distortion = 0;  // finite
};

struct KnapsackSolution {
  bool feasible = false;
  std::vector<size_t> choice;  // index into each group's choices
  double cost = 0;
  double distortion = 0;
};

struct DpOptions {
  // Budget cells of the table. When the budget (above the groups' minimum costs) fits in this
  // many cells and costs are integers, the DP is exact; otherwise costs are rounded up to
  // budget/resolution units (never exceeding the budget) and a greedy pass spends what the
  // rounding left over.
  int64_t resolution = int64_t{1} << 16;
  // When set, receives the optimal distortion for every budget cell: frontier[b] for total cost
  // at most min_cost + b * unit (unit and min_cost returned below).
  std::vector<double>* frontier = nullptr;
  double* frontier_unit = nullptr;
  double* frontier_min_cost = nullptr;
};

// Dynamic program G_i(b) = min_k [d_ik + G_{i-1}(b - c_ik)] over budget cells.
// O(groups * choices * resolution) time, O(groups * resolution) memory.
KnapsackSolution solve_dp(const std::vector<std::vector<Choice>>& groups, double budget,
                          const DpOptions& options = {});

// Lagrangian relaxation (Shoham & Gersho 1988): each group minimises d + lambda * c; lambda is
// bisected to the smallest value whose total cost fits. Fast, but misses non-convex points.
// `lower_bound`, when set, receives the best dual bound found (<= the exact optimum).
KnapsackSolution solve_lagrange(const std::vector<std::vector<Choice>>& groups, double budget,
                                double* lower_bound = nullptr);

// Exhaustive search; exponential, for tests only.
KnapsackSolution solve_brute_force(const std::vector<std::vector<Choice>>& groups, double budget);

}  // namespace rdprune
