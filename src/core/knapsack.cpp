#include "rdprune/knapsack.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "rdprune/error.h"

namespace rdprune {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Cell updates (choices x cells) below which one exact pass is cheap enough.
constexpr double kSinglePassWork = 4e6;
// Choices on each side of the coarse solution that the fine pass reconsiders.
constexpr size_t kWindow = 4;

void check_groups(const std::vector<std::vector<Choice>>& groups) {
  for (const auto& group : groups) {
    if (group.empty()) throw Error("allocation: a layer has no allowed level");
    for (const auto& choice : group) {
      if (!(choice.cost >= 0) || !std::isfinite(choice.cost) || !std::isfinite(choice.distortion)) {
        throw Error("allocation: costs must be finite and >= 0, distortions finite");
      }
    }
  }
}

KnapsackSolution evaluate(const std::vector<std::vector<Choice>>& groups, std::vector<size_t> choice,
                          double budget) {
  KnapsackSolution solution;
  solution.choice = std::move(choice);
  for (size_t i = 0; i < groups.size(); ++i) {
    solution.cost += groups[i][solution.choice[i]].cost;
    solution.distortion += groups[i][solution.choice[i]].distortion;
  }
  solution.feasible = solution.cost <= budget;
  return solution;
}

// Spends leftover budget: repeatedly applies the single-group change that lowers distortion the
// most while the exact total cost stays within budget. O(groups * choices) per change.
void spend_leftover(const std::vector<std::vector<Choice>>& groups, double budget,
                    KnapsackSolution& solution) {
  for (;;) {
    double best_gain = 0;
    size_t best_group = 0;
    size_t best_choice = 0;
    for (size_t i = 0; i < groups.size(); ++i) {
      const Choice& current = groups[i][solution.choice[i]];
      for (size_t k = 0; k < groups[i].size(); ++k) {
        const Choice& candidate = groups[i][k];
        const double gain = current.distortion - candidate.distortion;
        if (gain > best_gain && solution.cost - current.cost + candidate.cost <= budget) {
          best_gain = gain;
          best_group = i;
          best_choice = k;
        }
      }
    }
    if (best_gain <= 0) return;
    const Choice& from = groups[best_group][solution.choice[best_group]];
    const Choice& to = groups[best_group][best_choice];
    solution.cost += to.cost - from.cost;
    solution.distortion += to.distortion - from.distortion;
    solution.choice[best_group] = best_choice;
  }
}

// One DP pass over `resolution` budget cells; exact when costs are integers and the budget
// above the minimum fits in the cells.
KnapsackSolution dp_pass(const std::vector<std::vector<Choice>>& groups, double budget,
                         const DpOptions& options) {
  const size_t layers = groups.size();
  // Shift every group by its cheapest choice: the table then spans only the budget above the
  // unavoidable minimum, which is where the decisions are.
  std::vector<double> min_cost(layers);
  double min_total = 0;
  for (size_t i = 0; i < layers; ++i) {
    min_cost[i] = kInf;
    for (const auto& choice : groups[i]) min_cost[i] = std::min(min_cost[i], choice.cost);
    min_total += min_cost[i];
  }
  KnapsackSolution infeasible;
  if (min_total > budget) return infeasible;
  const double spare = budget - min_total;

  bool integral = true;
  for (const auto& group : groups) {
    for (const auto& choice : group) integral = integral && choice.cost == std::floor(choice.cost);
  }
  // Cell size: 1 when exact integer arithmetic fits, else spare / resolution.
  double unit = 1.0;
  if (!integral || spare > static_cast<double>(options.resolution)) {
    unit = std::max(spare / static_cast<double>(options.resolution), std::numeric_limits<double>::min());
    if (integral) unit = std::max(unit, 1.0);
  }
  // Budget cells: floor(spare / unit); costs in cells: ceil((cost - min) / unit), so any choice
  // set within the cell budget is within the real budget.
  const auto cells = static_cast<int64_t>(std::floor(spare / unit));
  const size_t width = static_cast<size_t>(std::max<int64_t>(cells, 0)) + 1;
  std::vector<std::vector<int64_t>> cell_cost(layers);
  for (size_t i = 0; i < layers; ++i) {
    for (const auto& choice : groups[i]) {
      const double extra = choice.cost - min_cost[i];
      cell_cost[i].push_back(extra == 0 ? 0 : static_cast<int64_t>(std::ceil(extra / unit)));
    }
  }

  // rows[i][b]: minimal distortion of groups 0..i with total cells <= b. Rows are kept for the
  // backtrack; the inner loop runs over contiguous b for one choice and vectorises.
  std::vector<std::vector<double>> rows(layers, std::vector<double>(width, kInf));
  std::vector<double> zero(width, 0.0);
  for (size_t i = 0; i < layers; ++i) {
    const std::vector<double>& previous = i == 0 ? zero : rows[i - 1];
    double* current = rows[i].data();
    for (size_t k = 0; k < groups[i].size(); ++k) {
      const int64_t c = cell_cost[i][k];
      if (c >= static_cast<int64_t>(width)) continue;
      const double d = groups[i][k].distortion;
      const double* source = previous.data();
      for (size_t b = static_cast<size_t>(c); b < width; ++b) {
        const double value = source[b - static_cast<size_t>(c)] + d;
        current[b] = value < current[b] ? value : current[b];
      }
    }
  }
  if (layers == 0) {
    KnapsackSolution empty;
    empty.feasible = true;
    return empty;
  }
  if (options.frontier) *options.frontier = rows.back();
  if (options.frontier_unit) *options.frontier_unit = unit;
  if (options.frontier_min_cost) *options.frontier_min_cost = min_total;

  // Backtrack: find the choice whose sum reproduces each row's value bit for bit.
  std::vector<size_t> choice(layers, 0);
  size_t b = width - 1;
  for (size_t i = layers; i-- > 0;) {
    const std::vector<double>& previous = i == 0 ? zero : rows[i - 1];
    bool found = false;
    for (size_t k = 0; k < groups[i].size() && !found; ++k) {
      const int64_t c = cell_cost[i][k];
      if (c > static_cast<int64_t>(b)) continue;
      if (previous[b - static_cast<size_t>(c)] + groups[i][k].distortion == rows[i][b]) {
        choice[i] = k;
        b -= static_cast<size_t>(c);
        found = true;
      }
    }
    if (!found) throw Error("allocation: internal error in DP backtrack");
  }
  KnapsackSolution solution = evaluate(groups, std::move(choice), budget);
  if (unit != 1.0 || !integral) spend_leftover(groups, budget, solution);
  return solution;
}

}  // namespace

KnapsackSolution solve_dp(const std::vector<std::vector<Choice>>& groups, double budget,
                          const DpOptions& options) {
  check_groups(groups);
  if (options.resolution < 1) throw UsageError("resolution", "expected a positive cell count");
  size_t choices = 0;
  for (const auto& group : groups) choices += group.size();
  const double work = static_cast<double>(choices) * static_cast<double>(options.resolution);
  if (options.frontier || work <= kSinglePassWork) return dp_pass(groups, budget, options);
  // Two passes: a coarse DP over every choice finds the region of the optimum; a fine DP at full
  // resolution over a window of choices around it settles the details. O(choices * coarse +
  // groups * window * resolution) instead of O(choices * resolution).
  DpOptions coarse = options;
  coarse.resolution =
      std::max<int64_t>(256, static_cast<int64_t>(kSinglePassWork / static_cast<double>(choices)));
  const KnapsackSolution rough = dp_pass(groups, budget, coarse);
  if (!rough.feasible) return rough;
  std::vector<std::vector<Choice>> window(groups.size());
  std::vector<std::vector<size_t>> index(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    // The window: the choices nearest in cost to the rough choice, on both sides.
    std::vector<size_t> order(groups[i].size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return groups[i][a].cost < groups[i][b].cost; });
    const auto at =
        static_cast<size_t>(std::find(order.begin(), order.end(), rough.choice[i]) - order.begin());
    const size_t first = at >= kWindow ? at - kWindow : 0;
    const size_t last = std::min(order.size(), at + kWindow + 1);
    for (size_t j = first; j < last; ++j) {
      window[i].push_back(groups[i][order[j]]);
      index[i].push_back(order[j]);
    }
  }
  KnapsackSolution fine = dp_pass(window, budget, options);
  if (!fine.feasible || fine.distortion > rough.distortion) return rough;
  for (size_t i = 0; i < groups.size(); ++i) fine.choice[i] = index[i][fine.choice[i]];
  spend_leftover(groups, budget, fine);
  return fine;
}

KnapsackSolution solve_lagrange(const std::vector<std::vector<Choice>>& groups, double budget,
                                double* lower_bound) {
  check_groups(groups);
  auto pick = [&](double lambda, double* dual) {
    std::vector<size_t> choice(groups.size());
    double value = -lambda * budget;
    for (size_t i = 0; i < groups.size(); ++i) {
      double best = kInf;
      for (size_t k = 0; k < groups[i].size(); ++k) {
        const double v = groups[i][k].distortion + lambda * groups[i][k].cost;
        // Ties go to the cheaper choice, so large lambda reaches the minimum-cost solution.
        if (v < best || (v == best && groups[i][k].cost < groups[i][choice[i]].cost)) {
          best = v;
          choice[i] = k;
        }
      }
      value += best;
    }
    if (dual) *dual = value;
    return choice;
  };
  double best_dual = -kInf;
  double dual = 0;
  KnapsackSolution at_zero = evaluate(groups, pick(0.0, &dual), budget);
  best_dual = std::max(best_dual, dual);
  if (at_zero.feasible) {
    if (lower_bound) *lower_bound = best_dual;
    return at_zero;
  }
  double low = 0.0;
  double high = 1.0;
  KnapsackSolution best;
  for (int i = 0; i < 200; ++i) {
    best = evaluate(groups, pick(high, &dual), budget);
    best_dual = std::max(best_dual, dual);
    if (best.feasible) break;
    low = high;
    high *= 4;
  }
  if (!best.feasible) {
    if (lower_bound) *lower_bound = best_dual;
    return best;
  }
  for (int i = 0; i < 100; ++i) {
    const double mid = 0.5 * (low + high);
    KnapsackSolution candidate = evaluate(groups, pick(mid, &dual), budget);
    best_dual = std::max(best_dual, dual);
    if (candidate.feasible) {
      high = mid;
      best = std::move(candidate);
    } else {
      low = mid;
    }
  }
  if (lower_bound) *lower_bound = best_dual;
  return best;
}

KnapsackSolution solve_brute_force(const std::vector<std::vector<Choice>>& groups, double budget) {
  check_groups(groups);
  KnapsackSolution best;
  best.distortion = kInf;
  std::vector<size_t> choice(groups.size(), 0);
  for (;;) {
    KnapsackSolution candidate = evaluate(groups, choice, budget);
    if (candidate.feasible && candidate.distortion < best.distortion) best = candidate;
    size_t i = 0;
    while (i < groups.size() && ++choice[i] == groups[i].size()) choice[i++] = 0;
    if (i == groups.size()) break;
  }
  if (!best.feasible) best.distortion = 0;
  return best;
}

}  // namespace rdprune
