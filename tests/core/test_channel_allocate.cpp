// Allocation at channel granularity: exact costs, budgets never exceeded, files read back.
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include <gtest/gtest.h>

#include "rdprune/channel_allocate.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

// A chain of `groups` convolutions of 3x3 kernels: layer i reads group i-1 and produces group i,
// so neighbouring widths multiply; a last layer reads the last group.
ChannelCostModel chain(const std::vector<int64_t>& channels) {
  ChannelCostModel model;
  int64_t in = 3;
  for (size_t g = 0; g < channels.size(); ++g) {
    model.groups.push_back("conv" + std::to_string(g));
    model.channels.push_back(channels[g]);
    model.layers.push_back(
        {"conv" + std::to_string(g),
         channels[g] * in * 9,
         100.0 / static_cast<double>(g + 1),
         static_cast<int64_t>(g),
         g == 0 ? std::vector<int64_t>{} : std::vector<int64_t>{static_cast<int64_t>(g) - 1},
         0,
         {}});
    in = channels[g];
  }
  model.layers.push_back({"fc", in * 10, 1.0, -1, {static_cast<int64_t>(channels.size()) - 1}, 0, {}});
  return model;
}

// A dense block: layer i reads the concatenation of the 3 input channels (kept whole) and every
// earlier layer's channels, and produces group i; a last layer reads them all.
ChannelCostModel dense_block(const std::vector<int64_t>& channels) {
  ChannelCostModel model;
  int64_t in = 3;
  std::vector<int64_t> read;
  for (size_t g = 0; g < channels.size(); ++g) {
    model.groups.push_back("conv" + std::to_string(g));
    model.channels.push_back(channels[g]);
    model.layers.push_back({"conv" + std::to_string(g),
                            channels[g] * in * 9,
                            50.0,
                            static_cast<int64_t>(g),
                            read,
                            read.empty() ? 0 : 3,
                            {}});
    read.push_back(static_cast<int64_t>(g));
    in += channels[g];
  }
  model.layers.push_back({"fc", in * 10, 1.0, -1, read, 3, {}});
  validate(model, "test");
  return model;
}

// Curves over every kept count, distortion falling as channels stay, random in shape.
CurveSet curves_for(const ChannelCostModel& model, uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_real_distribution<double> scale(0.1, 2.0);
  CurveSet curves;
  curves.metric = "mse";
  curves.granularity = "channel";
  curves.channel_costs = model;
  for (size_t g = 0; g < model.groups.size(); ++g) {
    LayerCurve curve;
    curve.name = model.groups[g];
    curve.weights = model.channels[g];
    const double a = scale(random);
    for (int64_t removed = 0; removed < curve.weights; ++removed) {
      curve.sparsity.push_back(static_cast<double>(removed) / static_cast<double>(curve.weights));
      curve.kept.push_back(curve.weights - removed);
      const double x = static_cast<double>(removed) / static_cast<double>(curve.weights);
      curve.distortion.push_back(a * std::pow(x, 1.0 + scale(random) * 0.1 + 1.0));
    }
    curves.layers.push_back(curve);
  }
  validate(curves, "test");
  return curves;
}

double predicted(const CurveSet& curves, const Plan& plan) {
  double total = 0;
  for (size_t g = 0; g < curves.layers.size(); ++g) {
    const auto& curve = curves.layers[g];
    for (size_t k = 0; k < curve.kept.size(); ++k)
      if (curve.kept[k] == plan.layers[g].kept) total += curve.distortion[k];
  }
  return total;
}

// Exhaustive search: the least predicted distortion of any widths (each group from one channel to
// all) whose exact cost fits `budget`; `plan` gives the entries to fill.
double best_by_search(const ChannelCostModel& model, const CurveSet& curves, const Plan& plan,
                      BudgetKind kind, double budget) {
  double best = INFINITY;
  std::vector<int64_t> kept(model.channels.size());
  std::function<void(size_t)> search = [&](size_t g) {
    if (g == kept.size()) {
      if (channel_cost(model, kept, kind) > budget) return;
      Plan candidate = plan;
      for (size_t i = 0; i < kept.size(); ++i) candidate.layers[i].kept = kept[i];
      best = std::min(best, predicted(curves, candidate));
      return;
    }
    for (kept[g] = 1; kept[g] <= model.channels[g]; ++kept[g]) search(g + 1);
  };
  search(0);
  return best;
}

TEST(ChannelCost, MultipliesTheKeptFractionsOfBothSides) {
  const ChannelCostModel model = chain({4, 8});
  // conv0: 4*3*9 weights, conv1: 8*4*9, fc: 8*10.
  EXPECT_EQ(channel_cost(model, {4, 8}, BudgetKind::kParams), 108 + 288 + 80);
  EXPECT_EQ(channel_cost(model, {2, 4}, BudgetKind::kParams), 54 + 72 + 40);
  EXPECT_DOUBLE_EQ(channel_cost(model, {2, 4}, BudgetKind::kFlops), 54 * 100 + 72 * 50 + 40 * 1);
  EXPECT_THROW(channel_cost(model, {5, 8}, BudgetKind::kParams), Error);
  EXPECT_THROW(channel_cost(model, {4}, BudgetKind::kParams), Error);
}

TEST(ChannelCost, AConcatenationsReaderKeepsItsWholePartAndEveryPartsKeptChannels) {
  const ChannelCostModel model = dense_block({4, 6});
  // conv0 reads the 3 input channels alone; conv1 reads them and conv0's 4; fc all 13.
  EXPECT_EQ(input_channels(model, model.layers[1]), 7);
  EXPECT_EQ(input_width(model.layers[2], {2, 3}), 8);
  EXPECT_EQ(channel_cost(model, {4, 6}, BudgetKind::kParams), 4 * 3 * 9 + 6 * 7 * 9 + 13 * 10);
  EXPECT_EQ(channel_cost(model, {2, 3}, BudgetKind::kParams), 2 * 3 * 9 + 3 * 5 * 9 + 8 * 10);
  ChannelCostModel broken = model;
  broken.layers[2].in_groups = {0, 0};
  EXPECT_THROW(validate(broken, "test"), Error);
  broken = model;
  broken.layers[0].in_whole = 3;  // without input groups
  EXPECT_THROW(validate(broken, "test"), Error);
}

TEST(ChannelRd, KeepsTheBudgetAcrossConcatenations) {
  for (uint32_t seed = 0; seed < 4; ++seed) {
    const ChannelCostModel model = dense_block({4, 5, 3});
    const CurveSet curves = curves_for(model, seed);
    for (const double target : {0.3, 0.5}) {
      RdOptions options;
      options.budget = BudgetKind::kFlops;
      options.sparsity_target = target;
      const Plan plan = allocate_channels_rd(curves, options);
      const double budget = (1 - target) * channel_cost(model, model.channels, BudgetKind::kFlops);
      EXPECT_LE(channel_cost(model, plan.kept_channels(), BudgetKind::kFlops), budget);
      const double best = best_by_search(model, curves, plan, BudgetKind::kFlops, budget);
      EXPECT_LE(*plan.predicted_distortion, best * 1.1 + 1e-12) << seed << " " << target;
    }
  }
}

TEST(ChannelRd, NeverExceedsTheBudgetAndComesNearTheBestPlan) {
  for (uint32_t seed = 0; seed < 6; ++seed) {
    const ChannelCostModel model = chain({4, 6, 5});
    const CurveSet curves = curves_for(model, seed);
    for (const BudgetKind kind : {BudgetKind::kParams, BudgetKind::kFlops}) {
      const bool flops = kind == BudgetKind::kFlops;
      for (const double target : {0.3, 0.5, 0.7}) {
        RdOptions options;
        options.budget = kind;
        options.sparsity_target = target;
        const Plan plan = allocate_channels_rd(curves, options);
        const double dense = channel_cost(model, model.channels, kind);
        const double budget = flops ? (1 - target) * dense : std::floor((1 - target) * dense + 1e-9);
        EXPECT_LE(channel_cost(model, plan.kept_channels(), kind), budget);
        EXPECT_NEAR(*plan.predicted_distortion, predicted(curves, plan), 1e-12);
        // Exhaustive search over every width: rd within 10% of the best distortion (neighbouring
        // widths multiply here; measured: the optimum in 35 of these 36 cases, 6% above it once).
        const double best = best_by_search(model, curves, plan, kind, budget);
        EXPECT_LE(*plan.predicted_distortion, best * 1.1 + 1e-12) << seed << " " << flops << " " << target;
      }
    }
  }
}

TEST(ChannelRd, RefusesABudgetBelowTheSmallestNetwork) {
  const ChannelCostModel model = chain({4, 6});
  const CurveSet curves = curves_for(model, 1);
  RdOptions options;
  options.sparsity_target = 0.99;
  try {
    allocate_channels_rd(curves, options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("below what the smallest network"), std::string::npos) << e.what();
  }
  EXPECT_THROW(allocate_channels_uniform(model, options), Error);
}

TEST(ChannelUniform, KeepsOneFractionEverywhereTheMostTheBudgetAllows) {
  const ChannelCostModel model = chain({16, 32, 64});
  RdOptions options;
  options.budget = BudgetKind::kFlops;
  options.sparsity_target = 0.5;
  const Plan plan = allocate_channels_uniform(model, options);
  const double budget = 0.5 * channel_cost(model, model.channels, BudgetKind::kFlops);
  EXPECT_LE(channel_cost(model, plan.kept_channels(), BudgetKind::kFlops), budget);
  // One channel more in every group would not fit, and every group keeps about the same fraction.
  std::vector<int64_t> more = plan.kept_channels();
  for (size_t g = 0; g < more.size(); ++g) more[g] = std::min(more[g] + 1, model.channels[g]);
  EXPECT_GT(channel_cost(model, more, BudgetKind::kFlops), budget);
  for (size_t g = 1; g < more.size(); ++g) {
    EXPECT_NEAR(static_cast<double>(plan.layers[g].kept) / static_cast<double>(model.channels[g]),
                static_cast<double>(plan.layers[0].kept) / 16.0, 1.0 / 16.0);
  }
  EXPECT_NEAR(plan.flops_sparsity_achieved(), 0.5, 0.05);
}

// Scores 1..channels times `scale[g]` per group.
std::vector<std::vector<double>> ascending_scores(const ChannelCostModel& model,
                                                  const std::vector<double>& scale) {
  std::vector<std::vector<double>> scores(model.groups.size());
  for (size_t g = 0; g < scores.size(); ++g)
    for (int64_t c = 0; c < model.channels[g]; ++c)
      scores[g].push_back(scale[g] * static_cast<double>(c + 1));
  return scores;
}

// The plan fits, removes no channel scoring above one it keeps, and putting back the best channel
// it removed would not fit.
void expect_fewest_removals(const ChannelCostModel& model, const std::vector<std::vector<double>>& scores,
                            const Plan& plan, double budget, BudgetKind kind) {
  std::vector<int64_t> kept = plan.kept_channels();
  EXPECT_LE(channel_cost(model, kept, kind), budget);
  int64_t last = -1;
  double best = -1e300;
  for (size_t g = 0; g < kept.size(); ++g) {
    std::vector<double> sorted = scores[g];
    std::sort(sorted.begin(), sorted.end());
    const int64_t removed = model.channels[g] - kept[g];
    if (removed > 0 && sorted[static_cast<size_t>(removed - 1)] >= best)
      best = sorted[static_cast<size_t>(removed - 1)], last = static_cast<int64_t>(g);
  }
  ASSERT_GE(last, 0);
  // A global ranking: no channel removed scores above one kept.
  for (size_t g = 0; g < kept.size(); ++g) {
    std::vector<double> sorted = scores[g];
    std::sort(sorted.begin(), sorted.end());
    EXPECT_GE(sorted[static_cast<size_t>(model.channels[g] - kept[g])], best) << model.groups[g];
  }
  ++kept[static_cast<size_t>(last)];
  EXPECT_GT(channel_cost(model, kept, kind), budget);
}

TEST(ChannelRanking, SlimmingRanksRawScalesAndGlobalNormalisesEachGroup) {
  const ChannelCostModel model = chain({8, 16, 32});
  RdOptions options;
  options.budget = BudgetKind::kFlops;
  options.sparsity_target = 0.2;
  const double budget = 0.8 * channel_cost(model, model.channels, BudgetKind::kFlops);
  // Group 0's scales are a hundredth of the others': slimming takes its channels alone.
  const auto scores = ascending_scores(model, {0.01, 1, 1});
  const Plan slimming = allocate_channels_slimming(model, scores, options);
  EXPECT_EQ(slimming.method, "slimming");
  EXPECT_EQ(slimming.criterion, "bn_scale");
  EXPECT_EQ(slimming.kept_channels()[1], 16);
  EXPECT_EQ(slimming.kept_channels()[2], 32);
  EXPECT_LT(slimming.kept_channels()[0], 8);
  expect_fewest_removals(model, scores, slimming, budget, BudgetKind::kFlops);
  EXPECT_EQ(plan_from_json(to_json(slimming), "p").criterion, "bn_scale");
  Plan weights = slimming;  // a batch-norm criterion means nothing to a weight plan
  weights.granularity = "weight";
  EXPECT_THROW(validate(weights, "p"), Error);
  // Divided by their means, group 2's lowest channels score lowest: global takes from it first.
  const Plan global = allocate_channels_global(model, scores, options);
  EXPECT_EQ(global.method, "global");
  EXPECT_EQ(global.criterion, "magnitude");
  EXPECT_LT(global.kept_channels()[2], 32);
  std::vector<std::vector<double>> normalised = scores;
  for (size_t g = 0; g < 3; ++g)
    for (double& x : normalised[g]) x /= 0.5 * (scores[g].front() + scores[g].back());
  expect_fewest_removals(model, normalised, global, budget, BudgetKind::kFlops);
}

TEST(ChannelRanking, TakesUnusedChannelsFirstAndKeepsWhatItMust) {
  const ChannelCostModel model = chain({8, 16, 32});
  RdOptions options;
  options.budget = BudgetKind::kFlops;
  options.sparsity_target = 0.05;
  auto scores = ascending_scores(model, {1, 1, 1});
  for (size_t c = 8; c < 12; ++c) scores[1][c] = -1;  // out of use
  for (const auto& plan :
       {allocate_channels_global(model, scores, options), allocate_channels_slimming(model, scores, options)})
    EXPECT_EQ(plan.kept_channels(), (std::vector<int64_t>{8, 15, 32})) << plan.method;

  // Groups kept dense stay whole; every other group keeps one channel at the most.
  options.sparsity_target = 0.6;
  options.keep_dense = {"conv2"};
  const Plan plan = allocate_channels_global(model, scores, options);
  EXPECT_EQ(plan.kept_channels()[2], 32);
  EXPECT_GE(plan.kept_channels()[0], 1);
  EXPECT_GE(plan.kept_channels()[1], 1);
  EXPECT_LE(plan.flops_sparsity_achieved(), 0.999);
  EXPECT_GE(plan.flops_sparsity_achieved(), 0.6);

  options.sparsity_target = 0.99;
  EXPECT_THROW(allocate_channels_slimming(model, scores, options), Error);  // below the smallest network
  options.sparsity_target = 0.5;
  options.keep_dense.clear();
  options.min_sparsity = 0.1;
  EXPECT_THROW(allocate_channels_global(model, scores, options), Error);  // bounds are rd's
  options.min_sparsity = 0;
  scores[0].pop_back();
  EXPECT_THROW(allocate_channels_global(model, scores, options), Error);  // a score per channel
}

// Latency tables for `model` on a grid of 3 widths per grouped side: seconds a * out * in per layer
// (its own widths where a side has no group), as timing a convolution roughly gives.
ChannelCostModel with_latency(ChannelCostModel model) {
  auto grid = [&](int64_t c, int64_t own) -> std::vector<int64_t> {
    if (c <= 0) return {own};
    return c > 2 ? std::vector<int64_t>{1, c / 2, c} : std::vector<int64_t>{1, c};
  };
  for (auto& layer : model.layers) {
    layer.latency.out_widths =
        grid(layer.out_group < 0 ? 0 : model.channels[static_cast<size_t>(layer.out_group)], 10);
    layer.latency.in_widths = grid(input_channels(model, layer), 3);
    for (const int64_t o : layer.latency.out_widths)
      for (const int64_t i : layer.latency.in_widths) layer.latency.seconds.push_back(1e-6 * o * i);
  }
  model.latency_rest = 1e-4;
  model.latency_setting = "test";
  validate(model, "test");
  return model;
}

TEST(ChannelLatency, InterpolatesTablesAndAddsTheRest) {
  LatencyTable table{{1, 5, 9}, {2, 4}, {1, 2, 3, 4, 5, 9}};
  EXPECT_DOUBLE_EQ(latency_at(table, 5, 4), 4);      // a grid point
  EXPECT_DOUBLE_EQ(latency_at(table, 3, 2), 2);      // halfway between rows
  EXPECT_DOUBLE_EQ(latency_at(table, 7, 3), 5.25);   // bilinear: rows 5 and 9, columns 2 and 4
  EXPECT_DOUBLE_EQ(latency_at(table, 100, 100), 9);  // clamped to the ends
  EXPECT_DOUBLE_EQ(latency_at(table, 0, 0), 1);
  LatencyTable one{{6}, {1, 3}, {2, 4}};
  EXPECT_DOUBLE_EQ(latency_at(one, 99, 2), 3);  // a side of one width ignores its argument
  LatencyTable noisy{{1, 2}, {1, 2}, {3, 1, 2, 5}};
  make_monotone(noisy);
  EXPECT_EQ(noisy.seconds, (std::vector<double>{3, 3, 3, 5}));

  const ChannelCostModel model = with_latency(chain({4, 8}));
  // conv0: out 4 of [1, 2, 4], in 3; conv1: out 8 of [1, 4, 8], in 4 of [1, 2, 4]; fc: in 8 of [1, 4, 8].
  EXPECT_NEAR(channel_cost(model, {4, 8}, BudgetKind::kLatency), 1e-6 * (4 * 3 + 8 * 4 + 10 * 8) + 1e-4,
              1e-15);
  EXPECT_NEAR(channel_cost(model, {2, 4}, BudgetKind::kLatency), 1e-6 * (2 * 3 + 4 * 2 + 10 * 4) + 1e-4,
              1e-15);
  EXPECT_THROW(channel_cost(chain({4, 8}), {4, 8}, BudgetKind::kLatency), Error);  // no tables

  ChannelCostModel short_table = model;
  short_table.layers[0].latency.out_widths = {1, 2, 3};  // ends below the group's 4 channels
  EXPECT_THROW(validate(short_table, "test"), Error);
  ChannelCostModel partial = model;
  partial.layers[1].latency = {};
  EXPECT_THROW(validate(partial, "test"), Error);
  EXPECT_THROW(budget_for(BudgetKind::kLatency, 0.5, 10, 10), UsageError);  // weight plans take none
}

TEST(ChannelLatency, EveryRuleKeepsTheBudgetAndPlansKeepTheirTables) {
  const ChannelCostModel model = with_latency(chain({8, 16, 32}));
  const CurveSet curves = curves_for(model, 4);
  RdOptions options;
  options.budget = BudgetKind::kLatency;
  const double dense = channel_cost(model, model.channels, BudgetKind::kLatency);
  for (const double target : {0.3, 0.5, 0.7}) {
    options.sparsity_target = target;
    const auto scores = ascending_scores(model, {1, 1, 1});
    for (const Plan& plan : {allocate_channels_rd(curves, options), allocate_channels_uniform(model, options),
                             allocate_channels_global(model, scores, options),
                             allocate_channels_slimming(model, scores, options)}) {
      EXPECT_LE(plan.kept_latency(), (1 - target) * dense * (1 + 1e-12)) << plan.method << target;
      EXPECT_GE(plan.latency_sparsity_achieved(), target - 1e-9) << plan.method;
      const Plan read = plan_from_json(to_json(plan), "p");
      EXPECT_EQ(read.budget, BudgetKind::kLatency);
      EXPECT_DOUBLE_EQ(read.kept_latency(), plan.kept_latency());
      EXPECT_EQ(read.channel_costs.latency_setting, "test");
    }
  }
  options.sparsity_target = 0.999;  // below the rest alone
  EXPECT_THROW(allocate_channels_uniform(model, options), Error);
  Plan plan = allocate_channels_uniform(chain({8, 16, 32}), RdOptions());
  plan.budget = BudgetKind::kLatency;  // without tables
  EXPECT_THROW(validate(plan, "p"), Error);
}

TEST(ChannelFiles, RoundTripAndNameBrokenCosts) {
  const ChannelCostModel model = chain({4, 6});
  const CurveSet curves = curves_for(model, 2);
  const CurveSet again = curves_from_json(to_json(curves), "c.json");
  EXPECT_EQ(again.granularity, "channel");
  EXPECT_EQ(again.channel_costs.layers.size(), 3u);
  EXPECT_EQ(again.channel_costs.layers[1].in_groups, std::vector<int64_t>{0});
  RdOptions options;
  options.sparsity_target = 0.4;
  const Plan plan = allocate_channels_rd(again, options);
  const Plan read = plan_from_json(to_json(plan), "p.json");
  EXPECT_EQ(read.kept_channels(), plan.kept_channels());
  EXPECT_EQ(read.kept_weights(), plan.kept_weights());
  EXPECT_LE(read.kept_weights(),
            std::floor(0.6 * channel_cost(model, model.channels, BudgetKind::kParams) + 1e-9));

  std::string text = to_json(plan);
  const auto at = text.find("\"in_group\": \"conv0\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 19, "\"in_group\": \"conv9\"");
  EXPECT_THROW(plan_from_json(text, "p.json"), Error);
}

TEST(ChannelFiles, AConcatenationsReaderListsItsGroupsAndWholeChannels) {
  const ChannelCostModel model = with_latency(dense_block({4, 6}));
  const CurveSet curves = curves_for(model, 3);
  const std::string text = to_json(curves);
  EXPECT_NE(text.find("\"in_whole\": 3"), std::string::npos);
  EXPECT_NE(text.find("\"in_group\": null"), std::string::npos);  // conv0: a single side as before
  const CurveSet again = curves_from_json(text, "c.json");
  EXPECT_EQ(again.channel_costs.layers[2].in_groups, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(again.channel_costs.layers[2].in_whole, 3);
  EXPECT_EQ(again.channel_costs.layers[2].latency.in_widths.back(), 13);
  RdOptions options;
  options.budget = BudgetKind::kLatency;
  options.sparsity_target = 0.3;
  const Plan read = plan_from_json(to_json(allocate_channels_uniform(model, options)), "p.json");
  for (const auto& kept : std::vector<std::vector<int64_t>>{{4, 6}, {1, 2}, {3, 5}}) {
    for (const BudgetKind kind : {BudgetKind::kParams, BudgetKind::kFlops})
      EXPECT_DOUBLE_EQ(channel_cost(again.channel_costs, kept, kind), channel_cost(model, kept, kind));
    EXPECT_DOUBLE_EQ(channel_cost(read.channel_costs, kept, BudgetKind::kLatency),
                     channel_cost(model, kept, BudgetKind::kLatency));
  }
  auto broken = [&](const std::string& from, const std::string& to) {
    std::string changed = text;
    const auto at = changed.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? text : changed.replace(at, from.size(), to);
  };
  EXPECT_THROW(curves_from_json(broken("\"in_whole\": 3", "\"in_whole\": -1"), "c.json"), Error);
  EXPECT_THROW(curves_from_json(broken("\"in_whole\": 3", "\"in_whole\": 3, \"in_group\": null"), "c.json"),
               Error);
  EXPECT_THROW(
      curves_from_json(broken("\"in_group\": null", "\"in_group\": null, \"in_whole\": 0"), "c.json"), Error);
  EXPECT_THROW(curves_from_json(broken("\"in_groups\": [", "\"in_groups\": \"conv0\", \"x\": ["), "c.json"),
               Error);
  EXPECT_THROW(curves_from_json(broken("\"in_whole\": 3", "\"in_whole_\": 3"), "c.json"), Error);
}

}  // namespace
}  // namespace rdprune
