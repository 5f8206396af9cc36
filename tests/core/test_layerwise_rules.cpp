#include "rdprune/layerwise_rules.h"

#include <cmath>

#include <gtest/gtest.h>

#include "rdprune/error.h"

namespace rdprune {
namespace {

std::vector<LayerInfo> equal_layers(size_t count, int64_t weights) {
  std::vector<LayerInfo> layers;
  for (size_t i = 0; i < count; ++i) {
    LayerInfo info;
    info.name = "layer" + std::to_string(i);
    info.type = "linear";
    info.shape = {weights / 10, 10};
    info.weights = weights;
    info.flops_per_weight = 1;
    layers.push_back(info);
  }
  return layers;
}

std::vector<int64_t> kept_of(const Plan& plan) {
  std::vector<int64_t> kept;
  for (const auto& layer : plan.layers) kept.push_back(layer.kept);
  return kept;
}

// A Pareto(alpha) sample at evenly spaced quantiles, scaled by `scale`: its density falls as a
// power law, x^-alpha, from `scale` up.
std::vector<double> pareto_quantiles(double alpha, size_t count, double scale) {
  std::vector<double> x;
  for (size_t k = 0; k < count; ++k) {
    const double u = (static_cast<double>(k) + 0.5) / static_cast<double>(count);
    x.push_back(scale * std::pow(1.0 - u, -1.0 / (alpha - 1.0)));
  }
  return x;
}

TEST(Owl, RatiosOfAHandComputedExample) {
  // Outlier ratios 1%, 2%, 4%, lambda 0.08, 70% sparsity of three layers of 1000 weights:
  // 2 lambda (D - min) / (max - min) = 0, 0.0533, 0.16; less their mean 0.0711: -0.0711, -0.0178,
  // +0.0889 around the density 0.3, so 228.9, 282.2 and 388.9 weights; the whole weights that meet
  // the 900-weight budget exactly are 229, 282 and 389.
  const Plan plan = allocate_owl(equal_layers(3, 1000), {0.01, 0.02, 0.04}, OwlOptions{5, 0.08},
                                 {BudgetKind::kParams, 0.7, false});
  EXPECT_EQ(kept_of(plan), (std::vector<int64_t>{229, 282, 389}));
  EXPECT_EQ(plan.method, "owl");
  EXPECT_NEAR(plan.sparsity_achieved(), 0.7, 1e-12);
}

TEST(Owl, EqualOutlierRatiosGiveTheUniformPlanAndLambdaZeroToo) {
  EXPECT_EQ(
      kept_of(allocate_owl(equal_layers(3, 1000), {0.03, 0.03, 0.03}, {}, {BudgetKind::kParams, 0.6, false})),
      (std::vector<int64_t>{400, 400, 400}));
  EXPECT_EQ(kept_of(allocate_owl(equal_layers(2, 1000), {0.01, 0.09}, OwlOptions{5, 0.0},
                                 {BudgetKind::kParams, 0.6, false})),
            (std::vector<int64_t>{400, 400}));
}

TEST(Owl, BadOptionsAndInputsAreRefused) {
  EXPECT_THROW(allocate_owl(equal_layers(2, 100), {0.1}, {}, {}), Error);
  EXPECT_THROW(allocate_owl(equal_layers(2, 100), {0.1, NAN}, {}, {}), Error);
  EXPECT_THROW(validate(OwlOptions{0, 0.08}), UsageError);
  EXPECT_THROW(validate(OwlOptions{5, -0.1}), UsageError);
}

TEST(AlphaPruning, RatiosOfAHandComputedExample) {
  // alpha 2, 3, 4 and epsilon 0.3: factors 0.7, 1.0, 1.3 of a sparsity s with mean 0.5: s = 0.5,
  // sparsities 0.35, 0.5, 0.65: the heaviest tail (smallest alpha) is pruned least.
  const Plan plan = allocate_alphapruning(equal_layers(3, 1000), {2, 3, 4}, AlphaOptions{0.3, "peak"},
                                          {BudgetKind::kParams, 0.5, false});
  EXPECT_EQ(kept_of(plan), (std::vector<int64_t>{650, 500, 350}));
  EXPECT_EQ(plan.method, "alphapruning");
}

TEST(AlphaPruning, HillsEstimatorRecoversAKnownPowerLaw) {
  for (const double alpha : {2.0, 3.0, 5.0}) {
    const auto spectrum = pareto_quantiles(alpha, 4000, 0.01);
    EXPECT_NEAR(hill_alpha(spectrum, "median"), alpha, 0.03 * alpha) << alpha;
    EXPECT_NEAR(hill_alpha(spectrum, "peak"), alpha, 0.03 * alpha) << alpha;
  }
  // Zero eigenvalues (a rank-deficient matrix) are left out rather than poisoning the logarithms.
  auto with_zeros = pareto_quantiles(3.0, 2000, 1.0);
  with_zeros.insert(with_zeros.end(), 500, 0.0);
  EXPECT_NEAR(hill_alpha(with_zeros, "median"), 3.0, 0.1);
  EXPECT_EQ(hill_alpha({1.0}, "peak"), 1.0);
  EXPECT_THROW(validate(AlphaOptions{0.3, "mid"}), UsageError);
  EXPECT_THROW(validate(AlphaOptions{1.0, "peak"}), UsageError);
}

}  // namespace
}  // namespace rdprune
