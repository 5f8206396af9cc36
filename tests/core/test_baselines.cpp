#include "rdprune/baselines.h"

#include <cmath>

#include <gtest/gtest.h>

#include "rdprune/allocate.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

LayerInfo layer(const std::string& name, const std::string& type, std::vector<int64_t> shape, double fpw = 1,
                double sparsity = 0) {
  LayerInfo info;
  info.name = name;
  info.type = type;
  info.shape = shape;
  info.weights = 1;
  for (int64_t d : shape) info.weights *= d;
  info.flops_per_weight = fpw;
  info.sparsity = sparsity;
  return info;
}

TEST(Baselines, UniformKeepsTheSameFractionEverywhere) {
  const std::vector<LayerInfo> layers = {layer("a", "conv2d", {10, 10}), layer("b", "conv2d", {20, 10}),
                                         layer("c", "linear", {10, 30})};
  const Plan plan = allocate_shape_baseline("uniform", layers, {BudgetKind::kParams, 0.5, false});
  EXPECT_EQ(plan.layers[0].kept, 50);
  EXPECT_EQ(plan.layers[1].kept, 100);
  EXPECT_EQ(plan.layers[2].kept, 150);
  EXPECT_GE(plan.sparsity_achieved(), 0.5);
}

TEST(Baselines, UniformPlusKeepsTheFirstConvDenseAndTwentyPercentOfTheLast) {
  const std::vector<LayerInfo> layers = {layer("conv1", "conv2d", {10, 10}),
                                         layer("mid", "conv2d", {100, 10}), layer("fc", "linear", {10, 10})};
  // Budget 15% of 1200 = 180 kept: conv1 100 dense, fc at its 20% floor (20), mid the other 60.
  const Plan plan = allocate_shape_baseline("uniform+", layers, {BudgetKind::kParams, 0.85, false});
  EXPECT_EQ(plan.layers[0].kept, 100);
  EXPECT_EQ(plan.layers[1].kept, 60);
  EXPECT_EQ(plan.layers[2].kept, 20);
  // At 50% the middle layer and the last share one sparsity, the last above its floor.
  const Plan half = allocate_shape_baseline("uniform+", layers, {BudgetKind::kParams, 0.5, false});
  EXPECT_EQ(half.layers[0].kept, 100);
  EXPECT_NEAR(half.layers[1].sparsity(), half.layers[2].sparsity(), 0.011);
  EXPECT_LE(half.kept_weights(), 600);
}

TEST(Baselines, ErkDensitiesFollowSumOverProductAndCapAtDense) {
  // Scores: a (4x4): 8/16 = 0.5; b (100x100): 200/10000 = 0.02. At 50%: a would exceed 1, so it is
  // kept dense and b takes the rest of the budget: 5008 - 16 = 4992 of 10000.
  const std::vector<LayerInfo> layers = {layer("a", "conv2d", {4, 4}), layer("b", "linear", {100, 100})};
  const Plan plan = allocate_shape_baseline("erk", layers, {BudgetKind::kParams, 0.5, false});
  EXPECT_EQ(plan.layers[0].kept, 16);
  EXPECT_EQ(plan.layers[1].kept, 4992);
  // At 99%: budget 100; densities 0.5 s and 0.02 s with 16 * 0.5 s + 10000 * 0.02 s = 100: s = 100 / 208.
  const Plan sparse = allocate_shape_baseline("erk", layers, {BudgetKind::kParams, 0.99, false});
  EXPECT_EQ(sparse.layers[0].kept, static_cast<int64_t>(std::floor(16 * 0.5 * 100 / 208.0)));
  EXPECT_EQ(sparse.layers[1].kept, static_cast<int64_t>(std::floor(10000 * 0.02 * 100 / 208.0)));
}

TEST(Baselines, NoLayerIsEmptiedUnlessAllowed) {
  const std::vector<LayerInfo> layers = {layer("tiny", "conv2d", {1, 3}), layer("big", "linear", {100, 100})};
  const Plan plan = allocate_shape_baseline("uniform", layers, {BudgetKind::kParams, 0.99, false});
  EXPECT_EQ(plan.layers[0].kept, 1);
  EXPECT_LE(plan.kept_weights(), static_cast<int64_t>(std::floor(0.01 * 10003)));
  const Plan empty = allocate_shape_baseline("uniform", layers, {BudgetKind::kParams, 0.99, true});
  EXPECT_EQ(empty.layers[0].kept, 0);
}

TEST(Baselines, FlopsBudgetAndMonotoneMasks) {
  const std::vector<LayerInfo> layers = {layer("a", "conv2d", {10, 10}, 100),
                                         layer("b", "linear", {10, 10}, 1, 0.8)};
  const Plan plan = allocate_shape_baseline("uniform", layers, {BudgetKind::kFlops, 0.5, false});
  EXPECT_GE(plan.flops_sparsity_achieved(), 0.5);
  EXPECT_LE(plan.layers[1].kept, 20);  // already 80% sparse: masks only grow
  EXPECT_THROW(allocate_shape_baseline("uniform", layers, {BudgetKind::kParams, 1.0, false}), UsageError);
  EXPECT_THROW(allocate_shape_baseline("magic", layers, {BudgetKind::kParams, 0.5, false}), UsageError);
}

TEST(Baselines, KeepDenseLayersKeepEveryWeightAndTheOthersShareTheRest) {
  // 1000 weights at 50%: a keeps its 100, b and c share the other 400 at one density, 4/9.
  const std::vector<LayerInfo> layers = {layer("a", "conv2d", {10, 10}), layer("b", "conv2d", {10, 10}),
                                         layer("c", "linear", {20, 40})};
  const Plan uniform = allocate_shape_baseline("uniform", layers, {BudgetKind::kParams, 0.5, false, {"a"}});
  EXPECT_EQ(uniform.layers[0].kept, 100);
  EXPECT_EQ(uniform.layers[1].kept, 44);   // floor(100 * 4 / 9)
  EXPECT_EQ(uniform.layers[2].kept, 355);  // floor(800 * 4 / 9)
  // ERK: a kept dense, b's score (20/100) and c's (60/800) share the 400 left:
  // 100 * 0.2 s + 800 * 0.075 s = 400 at s = 5, where b reaches its cap.
  const Plan erk = allocate_shape_baseline("erk", layers, {BudgetKind::kParams, 0.5, false, {"a"}});
  EXPECT_EQ(erk.layers[0].kept, 100);
  EXPECT_EQ(erk.layers[1].kept, 100);  // density 1: its cap
  EXPECT_EQ(erk.layers[2].kept, 300);
  // A layer already pruned keeps what it has.
  std::vector<LayerInfo> pruned = layers;
  pruned[0].sparsity = 0.3;
  EXPECT_EQ(
      allocate_shape_baseline("uniform", pruned, {BudgetKind::kParams, 0.5, false, {"a"}}).layers[0].kept,
      70);
  // Weights taken back to meet the budget never come from a kept layer.
  const Plan plan = make_plan("x", layers, {100, 100, 800}, {BudgetKind::kParams, 0.5, false, {"b"}});
  EXPECT_EQ(plan.layers[1].kept, 100);
  EXPECT_EQ(plan.layers[2].kept, 300);
  EXPECT_THROW(make_plan("x", layers, {1, 1, 800}, {BudgetKind::kParams, 0.5, false, {"c"}}), Error);
  // What the kept layers hold alone over the budget, and a name the model does not have.
  EXPECT_THROW(allocate_shape_baseline("uniform", layers, {BudgetKind::kParams, 0.5, false, {"c"}}), Error);
  EXPECT_THROW(allocate_shape_baseline("uniform", layers, {BudgetKind::kParams, 0.5, false, {"d"}}),
               UsageError);
}

TEST(Baselines, AllocateByScoreScalesScoresToTheBudgetBetweenFloorsAndCaps) {
  const std::vector<LayerInfo> layers = {layer("a", "conv2d", {10, 10}), layer("b", "conv2d", {10, 10}),
                                         layer("c", "linear", {10, 10})};
  // Budget 150 of 300: a's floor (0.3 above 0.2 s) and c's cap (0.7 below 0.8 s) bind, and b's
  // 0.4 s takes the rest: 30 + 40 s + 70 = 150 at s = 1.25, so b keeps 50.
  const Plan plan = allocate_by_score("x", layers, {0.2, 0.4, 0.8}, {0.3, 0, 0}, {1, 1, 0.7},
                                      {BudgetKind::kParams, 0.5, false});
  EXPECT_EQ(plan.method, "x");
  EXPECT_EQ(plan.layers[0].kept, 30);
  EXPECT_EQ(plan.layers[1].kept, 50);
  EXPECT_EQ(plan.layers[2].kept, 70);
  EXPECT_THROW(
      allocate_by_score("x", layers, {1, 1}, {0, 0, 0}, {1, 1, 1}, {BudgetKind::kParams, 0.5, false}), Error);
}

// Two layers of 100 weights and two plans keeping half of them: (90, 10) and (60, 40).
struct Pair {
  std::vector<LayerInfo> layers = {layer("a", "conv2d", {10, 10}), layer("b", "linear", {10, 10})};
  Plan first = make_plan("erk", layers, {90, 10}, {BudgetKind::kParams, 0.5, false});
  Plan second = make_plan("lamp", layers, {60, 40}, {BudgetKind::kParams, 0.5, false});
};

TEST(Exchange, GivesAShareOfOneLayersKeptWeightsToAnother) {
  const auto [layers, first, second] = Pair{};
  RdOptions rd;
  rd.sparsity_target = 0.5;
  // a gives a quarter of its 90 (22.5) to b: 67.5 and 32.5, rounded down.
  Plan moved = exchange_plan(first, 0, 1, 0.25, layers, rd);
  EXPECT_EQ(moved.method, "rd");
  EXPECT_EQ(moved.layers[0].kept, 67);
  EXPECT_EQ(moved.layers[1].kept, 32);
  // b gives a quarter of its 10 to a.
  moved = exchange_plan(first, 1, 0, 0.25, layers, rd);
  EXPECT_EQ(moved.layers[0].kept, 92);
  EXPECT_EQ(moved.layers[1].kept, 7);
  EXPECT_THROW(exchange_plan(first, 0, 0, 0.25, layers, rd), Error);
  EXPECT_THROW(exchange_plan(first, 0, 2, 0.25, layers, rd), Error);
  EXPECT_THROW(exchange_plan(first, 0, 1, 1.0, layers, rd), Error);
  EXPECT_THROW(exchange_plan(first, 0, 1, 0.25, {layers[0]}, rd), Error);
}

TEST(Exchange, UnderAFlopsBudgetMovesWhatTheWeightsCost) {
  // a costs 4 FLOPs a weight, b one: (90, 10) keeps 370 of 500 FLOPs.
  const std::vector<LayerInfo> layers = {layer("a", "conv2d", {10, 10}, 4), layer("b", "linear", {10, 10})};
  const Plan plan = make_plan("lamp", layers, {90, 10}, {BudgetKind::kFlops, 1 - 370.0 / 500, false});
  RdOptions rd;
  rd.budget = BudgetKind::kFlops;
  rd.sparsity_target = 1 - 370.0 / 500;
  // 22.5 of a's weights free 90 FLOPs, 90 of b's weights: b is full at 100, and a keeps 67.5.
  Plan moved = exchange_plan(plan, 0, 1, 0.25, layers, rd);
  EXPECT_EQ(moved.layers[0].kept, 67);
  EXPECT_EQ(moved.layers[1].kept, 100);
  EXPECT_LE(moved.kept_flops(), 370);
  // 2.5 of b's weights free 2.5 FLOPs, 0.625 of a's weights.
  moved = exchange_plan(plan, 1, 0, 0.25, layers, rd);
  EXPECT_EQ(moved.layers[0].kept, 90);
  EXPECT_EQ(moved.layers[1].kept, 7);
  // A layer whose FLOPs are unknown has no price to trade at.
  const std::vector<LayerInfo> unknown = {layers[0], layer("b", "linear", {10, 10}, -1)};
  EXPECT_THROW(exchange_plan(plan, 0, 1, 0.25, unknown, rd), Error);
  EXPECT_THROW(exchange_plan(plan, 1, 0, 0.25, unknown, rd), Error);
}

TEST(Exchange, KeepsRdConstraints) {
  const auto [layers, first, second] = Pair{};
  RdOptions rd;
  rd.sparsity_target = 0.5;
  rd.max_sparsity = 0.7;                                            // b keeps at least 30
  const Plan moved = exchange_plan(second, 1, 0, 0.5, layers, rd);  // b's 40 would fall to 20
  EXPECT_EQ(moved.layers[0].kept, 70);
  EXPECT_EQ(moved.layers[1].kept, 30);
  EXPECT_TRUE(honours(moved, layers, rd));
}

}  // namespace
}  // namespace rdprune
