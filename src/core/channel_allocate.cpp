#include "rdprune/channel_allocate.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>

#include <fmt/format.h>

#include "rdprune/baselines.h"
#include "rdprune/error.h"
#include "rdprune/knapsack.h"

namespace rdprune {
namespace {

constexpr int kMaxRounds = 20;
constexpr int kBisections = 24;
constexpr int kMaxExchanges = 10000;

double budget_of(const ChannelCostModel& model, const RdOptions& options) {
  const double dense = channel_cost(model, model.channels, options.budget);
  if (options.budget == BudgetKind::kLatency) return (1.0 - options.sparsity_target) * dense;
  return budget_for(options.budget, options.sparsity_target, static_cast<int64_t>(dense), dense);
}

void check_reachable(const ChannelCostModel& model, const std::vector<int64_t>& smallest,
                     const RdOptions& options) {
  const double least = channel_cost(model, smallest, options.budget);
  const double budget = budget_of(model, options);
  if (least > budget) {
    throw Error(fmt::format(
        "a {} budget of {:.6g} ({:.4f} removed) is below what the smallest network the levels allow "
        "costs ({:.6g}, {:.4f} removed)",
        to_string(options.budget), budget, options.sparsity_target, least,
        1.0 - least / channel_cost(model, model.channels, options.budget)));
  }
}

// The rules other than rd decide every group's width themselves.
void check_no_bounds(const std::string& method, const RdOptions& options) {
  if (options.min_sparsity > 0 || options.max_sparsity < 1)
    throw Error("allocate: per-group sparsity bounds are for rd's channel plans, not " + method + "'s");
}

// Group g's share of the cost at `kept` channels, every other group at `widths`: the layers it
// produces or reads, each at its other side's width.
double linear_cost(const ChannelCostModel& model, const std::vector<int64_t>& widths, size_t g, int64_t kept,
                   BudgetKind kind) {
  const auto group = static_cast<int64_t>(g);
  double total = 0;
  for (const auto& layer : model.layers) {
    const bool reads = layer.reads(group);
    if (layer.out_group != group && !reads) continue;
    const int64_t out = layer.out_group == group ? kept
                        : layer.out_group < 0    ? 0
                                                 : widths[static_cast<size_t>(layer.out_group)];
    const int64_t in = input_width(layer, widths) + (reads ? kept - widths[g] : 0);
    total += layer_cost(model, layer, out, in, kind);
  }
  return total;
}

// The levels each group may take: its curve's levels within the options' constraints.
std::vector<std::vector<size_t>> allowed_levels(const CurveSet& curves, const RdOptions& options) {
  check_keep_dense(options.keep_dense, names_of(curves.layers), "the curves");
  std::vector<std::vector<size_t>> allowed(curves.layers.size());
  for (size_t g = 0; g < curves.layers.size(); ++g) {
    const LayerCurve& curve = curves.layers[g];
    const bool dense = is_kept_dense(options.keep_dense, curve.name);
    for (size_t k = 0; k < curve.kept.size(); ++k) {
      const double s = curve.sparsity[k];
      const bool ok = k == 0 || (!dense && s + 1e-12 >= options.min_sparsity &&
                                 s <= options.max_sparsity + 1e-12 && curve.kept[k] >= 1);
      if (ok) allowed[g].push_back(k);
    }
  }
  return allowed;
}

struct Round {
  std::vector<size_t> level;  // index into each group's curve
  std::vector<int64_t> kept;
  double distortion = 0;
};

Round round_of(const CurveSet& curves, std::vector<size_t> level) {
  Round round{std::move(level), {}, 0};
  for (size_t g = 0; g < curves.layers.size(); ++g) {
    round.kept.push_back(curves.layers[g].kept[round.level[g]]);
    round.distortion += curves.layers[g].distortion[round.level[g]];
  }
  return round;
}

// One DP over the cost linearised at `widths`, within `target` of exact cost.
std::optional<Round> solve_linearised(const CurveSet& curves, const std::vector<std::vector<size_t>>& allowed,
                                      const std::vector<int64_t>& widths, double target,
                                      const RdOptions& options) {
  const ChannelCostModel& model = curves.channel_costs;
  const BudgetKind kind = options.budget;
  // Exact cost at `widths` = the groups' linear shares + what none of them owns, less the layers
  // counted by several groups as often too many.
  double constant = channel_cost(model, widths, kind);
  std::vector<std::vector<Choice>> choices(allowed.size());
  for (size_t g = 0; g < allowed.size(); ++g) {
    constant -= linear_cost(model, widths, g, widths[g], kind);
    for (const size_t k : allowed[g]) {
      const LayerCurve& curve = curves.layers[g];
      choices[g].push_back({linear_cost(model, widths, g, curve.kept[k], kind), curve.distortion[k]});
    }
  }
  DpOptions dp;
  dp.resolution = options.resolution;
  const KnapsackSolution solution = solve_dp(choices, target - constant, dp);
  if (!solution.feasible) return std::nullopt;
  std::vector<size_t> level;
  for (size_t g = 0; g < allowed.size(); ++g) level.push_back(allowed[g][solution.choice[g]]);
  return round_of(curves, std::move(level));
}

// The round linearised at `widths` whose exact cost fits the budget with the least distortion,
// over DP budgets bisected between nothing and twice the dense cost.
std::optional<Round> fitting_round(const CurveSet& curves, const std::vector<std::vector<size_t>>& allowed,
                                   const std::vector<int64_t>& widths, double budget,
                                   const RdOptions& options) {
  const BudgetKind kind = options.budget;
  double low = 0;
  double high = 2 * channel_cost(curves.channel_costs, curves.channel_costs.channels, kind);
  std::optional<Round> best;
  for (int step = 0; step < kBisections; ++step) {
    const double target = (low + high) / 2;
    const auto round = solve_linearised(curves, allowed, widths, target, options);
    if (round && channel_cost(curves.channel_costs, round->kept, kind) <= budget) {
      if (!best || round->distortion < best->distortion) best = round;
      low = target;
    } else {
      high = target;
    }
  }
  return best;
}

// Group g one allowed level up (step -1) or down (+1) from `round`, if there is one.
std::optional<Round> moved(const CurveSet& curves, const std::vector<std::vector<size_t>>& allowed,
                           const Round& round, size_t g, int step) {
  const auto at = std::find(allowed[g].begin(), allowed[g].end(), round.level[g]);
  const auto index = (at - allowed[g].begin()) + step;
  if (at == allowed[g].end() || index < 0 || index >= static_cast<std::ptrdiff_t>(allowed[g].size()))
    return std::nullopt;
  std::vector<size_t> level = round.level;
  level[g] = allowed[g][static_cast<size_t>(index)];
  return round_of(curves, std::move(level));
}

// Local search on the exact cost: the best of raising one group a level, or raising one and
// lowering another, while it lowers the distortion within the budget.
Round improve_by_exchanges(const CurveSet& curves, const std::vector<std::vector<size_t>>& allowed,
                           Round round, double budget, BudgetKind kind) {
  const ChannelCostModel& model = curves.channel_costs;
  for (int move = 0; move < kMaxExchanges; ++move) {
    std::optional<Round> best;
    for (size_t g = 0; g < allowed.size(); ++g) {
      const auto raised = moved(curves, allowed, round, g, -1);
      if (!raised) continue;
      std::vector<Round> candidates = {*raised};
      for (size_t h = 0; h < allowed.size(); ++h) {
        const auto both = h == g ? std::nullopt : moved(curves, allowed, *raised, h, +1);
        if (both) candidates.push_back(*both);
      }
      for (const auto& candidate : candidates) {
        if (candidate.distortion < (best ? best->distortion : round.distortion) - 1e-15 &&
            channel_cost(model, candidate.kept, kind) <= budget)
          best = candidate;
      }
    }
    if (!best) break;
    round = *best;
  }
  return round;
}

Plan channel_plan(const ChannelCostModel& model, const std::vector<int64_t>& kept, const std::string& method,
                  const RdOptions& options) {
  Plan plan;
  plan.method = method;
  plan.budget = options.budget;
  plan.sparsity_target = options.sparsity_target;
  plan.granularity = "channel";
  plan.channel_costs = model;
  for (size_t g = 0; g < model.groups.size(); ++g)
    plan.layers.push_back({model.groups[g], model.channels[g], kept[g], 0});
  validate(plan, "allocate");
  return plan;
}

// Each group's scores divided by the mean of those of its channels in use (scores >= 0); channels
// out of use (negative scores) keep theirs.
std::vector<std::vector<double>> normalised_by_mean(std::vector<std::vector<double>> scores) {
  for (auto& group : scores) {
    double sum = 0;
    int64_t used = 0;
    for (const double score : group)
      if (score >= 0) sum += score, ++used;
    if (used == 0 || sum <= 0) continue;
    for (double& score : group)
      if (score >= 0) score /= sum / static_cast<double>(used);
  }
  return scores;
}

// A channel a ranking may remove: its score, its group and its rank within the group.
struct Ranked {
  double score;
  size_t group;
  int64_t rank;
  bool operator<(const Ranked& other) const {
    return std::tie(score, group, rank) < std::tie(other.score, other.group, other.rank);
  }
};

// Channels go lowest score first across the groups until the exact cost fits. The cost falls with
// every removal, so the shortest prefix of the ranking that fits is found by bisection.
Plan ranked_plan(const ChannelCostModel& model, const std::vector<std::vector<double>>& scores,
                 const std::string& method, const RdOptions& options) {
  validate(options);
  check_keep_dense(options.keep_dense, model.groups, "the model's channel groups");
  check_no_bounds(method, options);
  if (scores.size() != model.groups.size()) throw Error("allocate: one score list per channel group");
  std::vector<Ranked> ranking;
  std::vector<int64_t> smallest;
  for (size_t g = 0; g < model.groups.size(); ++g) {
    if (static_cast<int64_t>(scores[g].size()) != model.channels[g])
      throw Error("allocate: group " + model.groups[g] + " has a score per channel");
    std::vector<double> sorted = scores[g];
    std::stable_sort(sorted.begin(), sorted.end());
    const bool dense = is_kept_dense(options.keep_dense, model.groups[g]);
    smallest.push_back(dense ? model.channels[g] : 1);
    // The group's best channel stays: a group keeps at least one.
    for (int64_t r = 0; !dense && r + 1 < model.channels[g]; ++r)
      ranking.push_back({sorted[static_cast<size_t>(r)], g, r});
  }
  check_reachable(model, smallest, options);
  std::sort(ranking.begin(), ranking.end());
  auto kept_after = [&](size_t removed) {
    std::vector<int64_t> kept = model.channels;
    for (size_t i = 0; i < removed; ++i) --kept[ranking[i].group];
    return kept;
  };
  const double budget = budget_of(model, options);
  const BudgetKind kind = options.budget;
  size_t low = 0;  // the fewest removals that may fit
  size_t high = ranking.size();
  while (low < high) {
    const size_t mid = (low + high) / 2;
    if (channel_cost(model, kept_after(mid), kind) <= budget)
      high = mid;
    else
      low = mid + 1;
  }
  return channel_plan(model, kept_after(low), method, options);
}

}  // namespace

Plan allocate_channels_rd(const CurveSet& curves, const RdOptions& options) {
  validate(options);
  if (curves.granularity != "channel") throw Error("allocate: the curves are not channel curves");
  const ChannelCostModel& model = curves.channel_costs;
  const BudgetKind kind = options.budget;
  const auto allowed = allowed_levels(curves, options);
  std::vector<size_t> last;
  for (const auto& levels : allowed) last.push_back(levels.back());
  check_reachable(model, round_of(curves, last).kept, options);
  const double budget = budget_of(model, options);

  std::optional<Round> best;
  std::vector<int64_t> widths = model.channels;
  for (int r = 0; r < kMaxRounds; ++r) {
    const auto next = fitting_round(curves, allowed, widths, budget, options);
    if (!next) break;
    if (!best || next->distortion < best->distortion) best = next;
    if (next->kept == widths) break;
    widths = next->kept;
  }
  if (!best) best = round_of(curves, last);  // fits: checked above
  const Round chosen = improve_by_exchanges(curves, allowed, *best, budget, kind);
  Plan plan = channel_plan(model, chosen.kept, "rd", options);
  plan.predicted_distortion = chosen.distortion;
  plan.solver = "dp";
  return plan;
}

Plan allocate_channels_uniform(const ChannelCostModel& model, const RdOptions& options) {
  validate(options);
  check_keep_dense(options.keep_dense, model.groups, "the model's channel groups");
  check_no_bounds("uniform", options);
  const BudgetKind kind = options.budget;
  auto kept_at_fraction = [&](double fraction) {
    std::vector<int64_t> kept;
    for (size_t g = 0; g < model.groups.size(); ++g) {
      const double c = static_cast<double>(model.channels[g]);
      kept.push_back(is_kept_dense(options.keep_dense, model.groups[g])
                         ? model.channels[g]
                         : std::clamp<int64_t>(static_cast<int64_t>(std::ceil(fraction * c - 1e-9)), 1,
                                               model.channels[g]));
    }
    return kept;
  };
  check_reachable(model, kept_at_fraction(0), options);
  const double budget = budget_of(model, options);
  double low = 0;  // fits
  double high = 1;
  if (channel_cost(model, kept_at_fraction(1), kind) <= budget) low = 1;
  for (int i = 0; i < 60 && low < high; ++i) {
    const double mid = (low + high) / 2;
    (channel_cost(model, kept_at_fraction(mid), kind) <= budget ? low : high) = mid;
  }
  return channel_plan(model, kept_at_fraction(low), "uniform", options);
}

Plan allocate_channels_global(const ChannelCostModel& model, const std::vector<std::vector<double>>& scores,
                              const RdOptions& options) {
  return ranked_plan(model, normalised_by_mean(scores), "global", options);
}

Plan allocate_channels_slimming(const ChannelCostModel& model, const std::vector<std::vector<double>>& scores,
                                const RdOptions& options) {
  Plan plan = ranked_plan(model, scores, "slimming", options);
  plan.criterion = "bn_scale";
  return plan;
}

}  // namespace rdprune
