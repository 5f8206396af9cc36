#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "fresh_network.h"
#include "rdprune/error.h"
#include "rdprune/network.h"
#include "rdprune/train.h"

namespace rdprune {
namespace {
using testing::TempDir;

DatasetSplits toy_data(const TempDir& dir, int64_t train = 256, int64_t test = 128) {
  testing::write_idx_dataset(dir.path(), train, test, false);
  DatasetOptions options;
  options.name = "fashion-mnist";
  options.data_dir = dir.path();
  return load_dataset(options);
}

TrainOptions quick(int64_t steps, const std::string& optimizer = "sgd") {
  TrainOptions options;
  options.steps = steps;
  options.batch_size = 32;
  options.optimizer = optimizer;
  options.lr = optimizer == "adamw" ? 1e-3 : 0.05;
  return options;
}

TEST(Train, AFewStepsLowerTheLossAndLearnTheToyTask) {
  TempDir dir;
  const auto data = toy_data(dir);
  auto network = testing::fresh_network("lenet5");
  const EvalResult before = evaluate(*network, data.test);
  const TrainResult result = train(*network, data.train, quick(80));
  const EvalResult after = evaluate(*network, data.test);
  EXPECT_EQ(result.steps, 80);
  EXPECT_LT(after.loss, before.loss * 0.5);
  EXPECT_GT(after.top1, 0.8);  // bright squares at ten positions are easy to tell apart
}

TEST(Train, SameSeedSameWeights) {
  TempDir dir;
  const auto data = toy_data(dir, 64, 16);
  auto a = testing::fresh_network("mlp", 4);
  auto b = testing::fresh_network("mlp", 4);
  auto options = quick(6);
  options.augmentation = {2, true};
  train(*a, data.train, options);
  train(*b, data.train, options);
  for (size_t i = 0; i < a->layers().size(); ++i) {
    EXPECT_TRUE(torch::equal(a->layers()[i].weight, b->layers()[i].weight));
  }
}

void expect_masks_hold(const std::string& optimizer) {
  TempDir dir;
  const auto data = toy_data(dir, 128, 16);
  auto network = testing::fresh_network("lenet5");
  std::vector<torch::Tensor> masks;
  for (size_t i = 0; i < network->layers().size(); ++i) {
    masks.push_back(torch::rand(network->layers()[i].weight.sizes()) > 0.7);
    network->set_mask(i, masks.back());
  }
  auto options = quick(15, optimizer);
  options.weight_decay = 0.01;  // decay and momentum must not revive pruned weights either
  train(*network, data.train, options);
  for (size_t i = 0; i < masks.size(); ++i) {
    const auto& weight = network->layers()[i].weight;
    EXPECT_EQ(weight.masked_select(masks[i].logical_not()).abs().max().item<double>(), 0.0)
        << optimizer << " " << network->layers()[i].name;
    EXPECT_GT(weight.masked_select(masks[i]).abs().min().item<double>(), 0.0);
  }
}

TEST(Train, MasksHoldUnderSgdWithMomentumAndWeightDecay) {
  expect_masks_hold("sgd");
}
TEST(Train, MasksHoldUnderAdamW) {
  expect_masks_hold("adamw");
}

TEST(Train, CosineScheduleEndsNearZero) {
  TrainOptions options;
  options.lr = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate_at(options, 0, 100), 0.1);
  EXPECT_NEAR(learning_rate_at(options, 50, 100), 0.05, 1e-12);
  EXPECT_LT(learning_rate_at(options, 99, 100), 1e-3);
  options.schedule = "constant";
  EXPECT_DOUBLE_EQ(learning_rate_at(options, 99, 100), 0.1);
  options.warmup_fraction = 0.1;
  EXPECT_NEAR(learning_rate_at(options, 0, 100), 0.01, 1e-12);
}

TEST(Train, RejectsBadOptions) {
  TrainOptions options = quick(10);
  options.optimizer = "lbfgs";
  EXPECT_THROW(validate(options), UsageError);
  options = quick(10);
  options.lr = -1;
  EXPECT_THROW(validate(options), UsageError);
  options = quick(0);
  EXPECT_THROW(validate(options), UsageError);
  options = quick(10);
  options.momentum = 1.5;
  EXPECT_THROW(validate(options), UsageError);
}

TEST(Evaluate, CountsTopOneAndTopFiveByHand) {
  // An untrained MLP: the expectations are computed directly from its logits.
  TempDir dir;
  const auto data = toy_data(dir, 16, 40);
  auto network = testing::fresh_network("mlp");
  torch::NoGradGuard no_grad;
  const auto batch = data.test.batch(torch::arange(40));
  const auto logits = network->forward(batch.images);
  const auto expected_top1 = logits.argmax(1).eq(batch.labels).to(torch::kDouble).mean().item<double>();
  const auto top5 = std::get<1>(logits.topk(5, 1));
  const auto expected_top5 =
      top5.eq(batch.labels.view({-1, 1})).any(1).to(torch::kDouble).mean().item<double>();
  const auto expected_loss = torch::nn::functional::cross_entropy(logits, batch.labels).item<double>();
  const EvalResult result = evaluate(*network, data.test, /*batch_size=*/16);
  EXPECT_EQ(result.samples, 40);
  EXPECT_DOUBLE_EQ(result.top1, expected_top1);
  EXPECT_DOUBLE_EQ(result.top5, expected_top5);
  EXPECT_NEAR(result.loss, expected_loss, 1e-5);
  // Per-image outcomes in dataset order, across batches of 16.
  const auto expected_hits = logits.argmax(1).eq(batch.labels);
  ASSERT_EQ(result.hits.size(), 40u);
  for (int64_t i = 0; i < 40; ++i) EXPECT_EQ(result.hits[i] != 0, expected_hits[i].item<bool>()) << i;
}

}  // namespace
}  // namespace rdprune
