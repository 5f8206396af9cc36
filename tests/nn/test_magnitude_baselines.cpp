#include <gtest/gtest.h>
#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/magnitude_baselines.h"
#include "rdprune/masks.h"

namespace rdprune {
namespace {

std::unique_ptr<Network> seeded_mlp() {
  torch::manual_seed(0);
  ModelMeta meta;
  meta.arch = "mlp";
  meta.input_shape = {1, 28, 28};
  meta.num_classes = 10;
  return create_network(meta);
}

TEST(MagnitudeBaselines, GlobalUsesOneThresholdAcrossLayers) {
  auto network = seeded_mlp();
  const auto infos = layer_census(*network, {1, 28, 28});
  const Plan plan = allocate_magnitude_baseline("global", *network, infos, {BudgetKind::kParams, 0.9, false});
  // The threshold: the largest magnitude among the pruned weights is below the smallest kept one.
  apply_plan(*network, plan, "global");
  double largest_pruned = 0;
  double smallest_kept = 1e9;
  torch::NoGradGuard no_grad;
  auto original = seeded_mlp();  // the same seed: the unpruned magnitudes
  for (size_t i = 0; i < original->layers().size(); ++i) {
    const auto magnitude = original->layers()[i].weight.abs();
    const auto& mask = network->masks()[i];
    if ((~mask).any().item<bool>())
      largest_pruned = std::max(largest_pruned, magnitude.masked_select(~mask).max().item<double>());
    smallest_kept = std::min(smallest_kept, magnitude.masked_select(mask).min().item<double>());
  }
  EXPECT_LE(largest_pruned, smallest_kept);
  EXPECT_EQ(plan.kept_weights(), static_cast<int64_t>(0.1 * 266200));
}

TEST(MagnitudeBaselines, KeepDenseLayersStayOutOfTheRanking) {
  auto network = seeded_mlp();
  const auto infos = layer_census(*network, {1, 28, 28});
  const BaselineOptions options{BudgetKind::kParams, 0.9, false, {"fc3"}};
  for (const std::string method : {"global", "lamp"}) {
    const Plan plan = allocate_magnitude_baseline(method, *network, infos, options);
    EXPECT_EQ(plan.layers[2].kept, infos[2].weights) << method;
    EXPECT_EQ(plan.kept_weights(), static_cast<int64_t>(0.1 * 266200)) << method;
  }
  // global over the other two layers: one threshold there, what fc3 keeps taken from their share.
  const Plan plan = allocate_magnitude_baseline("global", *network, infos, options);
  apply_plan(*network, plan, "global");
  torch::NoGradGuard no_grad;
  auto original = seeded_mlp();
  double largest_pruned = 0;
  double smallest_kept = 1e9;
  for (size_t i = 0; i < 2; ++i) {
    const auto magnitude = original->layers()[i].weight.abs();
    const auto& mask = network->masks()[i];
    largest_pruned = std::max(largest_pruned, magnitude.masked_select(~mask).max().item<double>());
    smallest_kept = std::min(smallest_kept, magnitude.masked_select(mask).min().item<double>());
  }
  EXPECT_LE(largest_pruned, smallest_kept);
  EXPECT_THROW(
      allocate_magnitude_baseline("global", *network, infos, {BudgetKind::kParams, 0.9, false, {"fc9"}}),
      UsageError);
  // Without a mask a kept layer's zeros count as pruned, as the census counts them: the budget
  // they would have held goes to the other layers.
  auto zeros = seeded_mlp();
  zeros->layers()[2].weight.detach().narrow(1, 0, 50).zero_();  // half of fc3
  const auto zero_infos = layer_census(*zeros, {1, 28, 28});
  for (const std::string method : {"global", "lamp"}) {
    const Plan kept = allocate_magnitude_baseline(method, *zeros, zero_infos, options);
    EXPECT_EQ(kept.layers[2].kept, 500) << method;
    EXPECT_EQ(kept.kept_weights(), static_cast<int64_t>(0.1 * 266200)) << method;
  }
}

TEST(MagnitudeBaselines, LampScoresByHand) {
  // One layer with weights (1, 2, 3) and one with (10): LAMP scores are 1/14, 4/13, 9/9 and 1.
  // Keeping two weights keeps the 3 and the 10 (a layer's largest weight scores 1), where global
  // magnitude would keep the 10 and the 3 as well; keeping three, LAMP keeps the 2 (4/13 > 1/14).
  torch::manual_seed(0);
  ModelMeta meta;
  meta.arch = "mlp";
  meta.input_shape = {1, 1, 1};
  meta.num_classes = 1;
  auto network = create_network(meta);
  torch::NoGradGuard no_grad;
  // fc1: 300x1, fc2: 100x300, fc3: 1x100. Make fc3 hold (1, 2, 3, 0...) and fc1 one large weight.
  for (const auto& layer : network->layers()) layer.weight.detach().zero_();
  network->layers()[2].weight.detach().index_put_({0, 0}, 1.0);
  network->layers()[2].weight.detach().index_put_({0, 1}, 2.0);
  network->layers()[2].weight.detach().index_put_({0, 2}, 3.0);
  network->layers()[0].weight.detach().index_put_({0, 0}, 10.0);
  network->layers()[1].weight.detach().index_put_({0, 0}, 0.5);
  const auto infos = layer_census(*network, {1, 1, 1});
  const int64_t total = 300 + 30000 + 100;
  const double keep4 = 1.0 - 4.5 / static_cast<double>(total);  // budget floor(4.5) = 4 kept
  const Plan plan = allocate_magnitude_baseline("lamp", *network, infos, {BudgetKind::kParams, keep4, false});
  EXPECT_EQ(plan.layers[0].kept, 1);  // the 10
  EXPECT_EQ(plan.layers[1].kept, 1);  // the 0.5: its layer's largest, score 1
  EXPECT_EQ(plan.layers[2].kept, 2);  // the 3 (score 1) and the 2 (score 4/13)
  const Plan global =
      allocate_magnitude_baseline("global", *network, infos, {BudgetKind::kParams, keep4, false});
  EXPECT_EQ(global.layers[2].kept, 2);
  EXPECT_EQ(global.layers[1].kept, 1);  // reserved: no layer is emptied
}

TEST(MagnitudeBaselines, AlreadyPrunedWeightsStayPruned) {
  auto network = seeded_mlp();
  const auto& weight = network->layers()[0].weight;
  network->set_mask(0, mask_keeping(magnitude_order(weight, {}), weight.numel() / 10, weight.sizes()));
  network->apply_masks();
  const auto infos = layer_census(*network, {1, 28, 28});
  for (const std::string method : {"global", "lamp"}) {
    const Plan plan = allocate_magnitude_baseline(method, *network, infos, {BudgetKind::kParams, 0.5, false});
    EXPECT_LE(plan.layers[0].kept, weight.numel() / 10) << method;
    EXPECT_NO_THROW(apply_plan(*network, plan, method));
  }
}

}  // namespace
}  // namespace rdprune
