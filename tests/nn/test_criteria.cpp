#include "rdprune/criterion.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fresh_network.h"
#include "rdprune/error.h"
#include "rdprune/layerwise_rules.h"
#include "rdprune/masks.h"

namespace rdprune {
namespace {

// Images as they are (identity normalisation), N(0, 1) pixels.
Dataset images(int64_t count) {
  torch::manual_seed(3);
  return Dataset(torch::randn({count, 1, 28, 28}), torch::zeros({count}, torch::kInt64), 10,
                 Normalization{{0.0}, {1.0}}, "test images");
}

TEST(Criteria, InputNormsAreEachFeaturesNormOverTheCalibrationImages) {
  auto network = testing::fresh_network("mlp");
  const Dataset data = images(20);
  const auto norms = input_feature_norms(*network, data, 8);  // three batches: 8, 8, 4
  ASSERT_EQ(norms.size(), 3u);
  const torch::Tensor x = data.batch(torch::arange(20)).images.flatten(1).to(torch::kFloat64);
  ASSERT_EQ(norms[0].sizes(), (std::vector<int64_t>{1, 784}));
  EXPECT_TRUE(torch::allclose(norms[0].squeeze(0), x.pow(2).mean(0).sqrt(), 1e-6, 1e-9));
  // fc2 reads fc1's activations: relu(W1 x + b1).
  torch::NoGradGuard no_grad;
  const auto& fc1 = network->layers()[0].weight;
  const torch::Tensor bias = network->parameters()[1].to(torch::kFloat64);
  const torch::Tensor hidden = torch::relu(x.matmul(fc1.to(torch::kFloat64).t()) + bias);
  ASSERT_EQ(norms[1].sizes(), (std::vector<int64_t>{1, 300}));
  EXPECT_TRUE(torch::allclose(norms[1].squeeze(0), hidden.pow(2).mean(0).sqrt(), 1e-4, 1e-6));
  // A convolution's feature is its input channel, the same for every kernel position.
  auto lenet = testing::fresh_network("lenet5");
  const auto conv_norms = input_feature_norms(*lenet, data, 32);
  ASSERT_EQ(conv_norms[0].sizes(), (std::vector<int64_t>{6, 1, 1, 1}));  // every row reads channel 0
  const double per_sample = x.pow(2).sum(1).mean().sqrt().item<double>();
  EXPECT_NEAR(conv_norms[0].min().item<double>(), per_sample, 1e-6 * per_sample);
  EXPECT_NEAR(conv_norms[0].max().item<double>(), per_sample, 1e-6 * per_sample);
  EXPECT_EQ(conv_norms[1].sizes(), (std::vector<int64_t>{16, 6, 1, 1}));
}

TEST(Criteria, WandaPrunesEveryOutputRowAlikeByWeightTimesInputNorm) {
  auto network = testing::fresh_network("mlp");
  const auto norms = input_feature_norms(*network, images(16), 16);
  network->set_criterion("wanda", norms);
  const auto& weight = network->layers()[1].weight;  // fc2: 100 rows of 300
  const torch::Tensor mask = mask_keeping(pruning_order(*network, 1, {}), 100 * 300 / 2 + 7, weight.sizes());
  const torch::Tensor per_row = mask.sum(1);
  EXPECT_EQ(per_row.min().item<int64_t>(), 150);
  EXPECT_EQ(per_row.max().item<int64_t>(), 151);
  EXPECT_EQ(per_row.eq(151).sum().item<int64_t>(), 7);  // the first rows lose their weight first
  EXPECT_TRUE(per_row.narrow(0, 93, 7).eq(151).all().item<bool>());
  // Within a row, the kept weights are the highest |w| * ||x||.
  const torch::Tensor score = criterion_scores(*network, 1);
  for (int64_t r = 0; r < 100; r += 33) {
    const double lowest_kept = score[r].masked_select(mask[r]).min().item<double>();
    const double highest_pruned = score[r].masked_select(mask[r].logical_not()).max().item<double>();
    EXPECT_GE(lowest_kept, highest_pruned) << "row " << r;
  }
  // Growing masks: weights already pruned go first, whatever their score.
  const torch::Tensor again = mask_keeping(pruning_order(*network, 1, mask), 100 * 100, weight.sizes());
  EXPECT_TRUE(again.logical_and(mask.logical_not()).sum().item<int64_t>() == 0);
  EXPECT_EQ(again.sum(1).min().item<int64_t>(), 100);
  EXPECT_EQ(again.sum(1).max().item<int64_t>(), 100);
  EXPECT_THROW(network->set_criterion("wanda", {}), Error);
}

TEST(Criteria, OutlierRatioOfATinyLayer) {
  // |W| = [[1, 1, 1, 1], [1, 1, 1, 9]], input norms 1, 1, 1, 2: scores 1 1 1 2 / 1 1 1 18, mean
  // 3.25. Above 3 x mean (9.75): one weight of eight; above 0.5 x mean: the 2 and the 18.
  const torch::Tensor w = torch::tensor({{1.0, 1.0, 1.0, 1.0}, {1.0, 1.0, 1.0, 9.0}});
  const torch::Tensor scores = w * torch::tensor({{1.0, 1.0, 1.0, 2.0}});
  EXPECT_DOUBLE_EQ(outlier_ratio(scores, 3), 1.0 / 8);
  EXPECT_DOUBLE_EQ(outlier_ratio(scores, 0.5), 2.0 / 8);
  EXPECT_DOUBLE_EQ(outlier_ratio(scores, 6), 0.0);
}

TEST(Criteria, AlphaOfAMatrixWhoseSpectrumFollowsAKnownPowerLaw) {
  // W = U diag(sqrt(lambda)) V^T with orthogonal U, V: the eigenvalues of W^T W are lambda, drawn
  // at evenly spaced quantiles of a power law with exponent 3.
  torch::manual_seed(5);
  const int64_t n = 400;
  const torch::Tensor u = std::get<0>(torch::linalg_qr(torch::randn({n, n}, torch::kFloat64)));
  const torch::Tensor v = std::get<0>(torch::linalg_qr(torch::randn({n, n}, torch::kFloat64)));
  const torch::Tensor quantiles = (torch::arange(n, torch::kFloat64) + 0.5) / n;
  const torch::Tensor lambda = (1 - quantiles).pow(-1.0 / 2.0);
  const torch::Tensor w = u.matmul(torch::diag(lambda.sqrt())).matmul(v.t()).to(torch::kFloat32);
  PrunableLayer layer{"w", "linear", w, w, 0};
  const auto spectrum = weight_spectrum(layer);
  ASSERT_EQ(spectrum.size(), static_cast<size_t>(n));
  EXPECT_NEAR(hill_alpha(spectrum, "median"), 3.0, 0.15);
  EXPECT_NEAR(hill_alpha(spectrum, "peak"), 3.0, 0.15);
  // A convolution's spectrum pools one matrix per kernel position.
  const torch::Tensor conv = torch::randn({8, 4, 3, 3});
  EXPECT_EQ(weight_spectrum({"c", "conv2d", conv, conv, 0}).size(), 9u * 4u);
}

}  // namespace
}  // namespace rdprune
