#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "rdprune/additivity.h"
#include "rdprune/allocate.h"
#include "rdprune/atomic_file.h"
#include "rdprune/distortion.h"
#include "rdprune/error.h"
#include "rdprune/magnitude_baselines.h"
#include "rdprune/masks.h"
#include "rdprune/refine.h"

namespace rdprune {
namespace {
using testing::TempDir;

std::unique_ptr<Network> fresh(const std::string& arch, uint64_t seed = 0) {
  torch::manual_seed(seed);
  ModelMeta meta;
  meta.arch = arch;
  meta.input_shape = {1, 28, 28};
  meta.num_classes = 10;
  auto network = create_network(meta);
  // Non-trivial batch-norm statistics.
  network->set_training(true);
  torch::NoGradGuard no_grad;
  network->forward(torch::randn({16, 1, 28, 28}));
  network->set_training(false);
  return network;
}

Dataset calibration_set(int64_t n) {
  DatasetOptions options;
  options.name = "synthetic";
  options.synthetic_size = n;
  options.seed = 9;
  return load_dataset(options).train;
}

TEST(Masks, OrderIsByMagnitudeWithTiesByIndexAndPrunedFirst) {
  const auto weight = torch::tensor({0.5, -0.1, 0.1, 2.0, 0.0, -0.5});
  EXPECT_TRUE(torch::equal(magnitude_order(weight, {}), torch::tensor({4, 1, 2, 0, 5, 3}, torch::kInt64)));
  const auto mask = torch::tensor({true, true, true, false, true, true});
  // The pruned weight (index 3) comes first even though it is the largest.
  EXPECT_EQ(magnitude_order(weight, mask)[0].item<int64_t>(), 3);
  const auto kept = mask_keeping(magnitude_order(weight, {}), 2, {6});
  EXPECT_TRUE(torch::equal(kept, torch::tensor({false, false, false, true, false, true})));
}

// An independent mask: std::stable_sort over (pruned first, |w| ascending), index order on ties.
torch::Tensor oracle_mask(const Network& network, size_t layer, int64_t kept) {
  const auto weight = network.layers()[layer].weight.detach().flatten().to(torch::kDouble);
  const auto& masks = network.masks();
  const torch::Tensor existing = layer < masks.size() && masks[layer].defined()
                                     ? masks[layer].flatten()
                                     : torch::ones({weight.numel()}, torch::kBool);
  std::vector<int64_t> index(static_cast<size_t>(weight.numel()));
  std::iota(index.begin(), index.end(), 0);
  auto w = weight.accessor<double, 1>();
  auto m = existing.accessor<bool, 1>();
  std::stable_sort(index.begin(), index.end(), [&](int64_t a, int64_t b) {
    const double ka = m[a] ? std::abs(w[a]) : -1.0;
    const double kb = m[b] ? std::abs(w[b]) : -1.0;
    return ka < kb;
  });
  torch::Tensor mask = torch::ones({weight.numel()}, torch::kBool);
  for (int64_t i = 0; i < weight.numel() - kept; ++i) mask[index[static_cast<size_t>(i)]] = false;
  return mask.view(network.layers()[layer].weight.sizes());
}

// The plain loop: prune layer i to `kept` (every other layer to its `context` count, when given),
// run every sample through the whole network, compare with the unpruned network's outputs.
double plain_distortion(Network& network, size_t layer, int64_t kept, const torch::Tensor& x,
                        const torch::Tensor& reference, const std::string& metric,
                        const std::vector<int64_t>& context = {}) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> saved;
  for (size_t j = 0; j < network.layers().size(); ++j) {
    const auto& weight = network.layers()[j].weight;
    saved.push_back(weight.detach().clone());
    if (j == layer) {
      weight.detach().mul_(oracle_mask(network, j, kept));
    } else if (!context.empty()) {
      weight.detach().mul_(oracle_mask(network, j, context[j]));
    }
  }
  const auto out = network.forward(x);
  for (size_t j = 0; j < saved.size(); ++j) network.layers()[j].weight.detach().copy_(saved[j]);
  if (metric == "kl") {
    const auto log_p = torch::log_softmax(reference.to(torch::kDouble), 1);
    const auto log_q = torch::log_softmax(out.to(torch::kDouble), 1);
    return (log_p.exp() * (log_p - log_q)).sum(1).mean().item<double>();
  }
  const auto squared = (out.to(torch::kDouble) - reference.to(torch::kDouble)).pow(2);
  return metric == "worst" ? squared.mean(1).max().item<double>() : squared.mean().item<double>();
}

void expect_curves_match_plain_loop(Network& network, const std::string& metric, CurveOptions options = {},
                                    int64_t levels = 5, int64_t samples = 24) {
  const Dataset data = calibration_set(samples);
  options.metric = metric;
  options.levels = levels;
  options.batch_size = 10;  // several batches per pass
  options.progress = false;
  const auto infos = layer_census(network, {1, 28, 28});
  const CurveSet curves = measure_curves(network, data, "synthetic", infos, options);
  ASSERT_EQ(curves.layers.size(), network.layers().size());
  torch::NoGradGuard no_grad;
  const auto x = data.batch(torch::arange(data.size())).images;
  const auto reference = network.forward(x);
  for (size_t i = 0; i < curves.layers.size(); ++i) {
    const auto& curve = curves.layers[i];
    EXPECT_EQ(curve.name, network.layers()[i].name);
    EXPECT_EQ(curve.flops_per_weight, infos[i].flops_per_weight);
    for (size_t k = 0; k < curve.sparsity.size(); ++k) {
      const double expected =
          plain_distortion(network, i, curve.kept[k], x, reference, metric, options.context_kept);
      EXPECT_NEAR(curve.distortion[k], expected, 1e-6 * (1 + expected)) << curve.name << " level " << k;
    }
  }
}

TEST(Curves, EveryPointEqualsThePlainLoopMse) {
  auto network = fresh("resnet20");
  expect_curves_match_plain_loop(*network, "mse");
  CurveOptions plain;
  plain.plain = true;
  expect_curves_match_plain_loop(*network, "mse", plain);
}

TEST(Curves, EveryPointEqualsThePlainLoopWorstOnAnMlp) {
  auto network = fresh("mlp");
  expect_curves_match_plain_loop(*network, "worst");
}

TEST(Curves, EveryPointEqualsThePlainLoopKlOnVgg16) {
  auto network = fresh("vgg16");
  CurveOptions options;
  options.tail = false;  // the tail is covered on resnet20; vgg16's large layers would add 20 levels
  expect_curves_match_plain_loop(*network, "kl", options, /*levels=*/2, /*samples=*/12);
}

TEST(Curves, LevelsBatchedTogetherEqualThePlainLoop) {
  auto network = fresh("resnet20");
  CurveOptions options;
  options.tail = false;
  options.level_batch = 3;  // 5 levels: groups of 3 and 2
  expect_curves_match_plain_loop(*network, "kl", options);
  auto vgg = fresh("vgg16");
  options.level_batch = 2;
  expect_curves_match_plain_loop(*vgg, "mse", options, /*levels=*/3, /*samples=*/12);
  options.level_batch = 0;
  EXPECT_THROW(
      measure_curves(*network, calibration_set(4), "s", layer_census(*network, {1, 28, 28}), options),
      UsageError);
}

TEST(Curves, SuffixExecutionFallsBackToThePlainLoopUnderAMemoryLimit) {
  auto network = fresh("resnet20");
  CurveOptions options;
  options.tail = false;
  options.max_memory_mib = 1;  // the first block's activations of 24 samples need 1.2 MiB
  expect_curves_match_plain_loop(*network, "mse", options);
}

TEST(Curves, AroundAPlanEveryPointEqualsThePlainLoopWithTheOthersPruned) {
  auto network = fresh("resnet20");
  CurveOptions options;
  options.tail = false;
  for (const auto& layer : network->layers()) options.context_kept.push_back(layer.weight.numel() / 4);
  const auto before = fingerprint(*network);
  expect_curves_match_plain_loop(*network, "mse", options, /*levels=*/2, /*samples=*/12);
  EXPECT_EQ(fingerprint(*network), before);  // the context is undone
  options.context_kept.pop_back();
  EXPECT_THROW(
      measure_curves(*network, calibration_set(4), "s", layer_census(*network, {1, 28, 28}), options), Error);
}

TEST(Curves, AModelWhoseOutputsAreNotFiniteIsRefusedNotMeasured) {
  auto network = fresh("lenet5");
  {
    torch::NoGradGuard no_grad;
    network->layers()[3].weight.view(-1)[0] = std::nan("");
  }
  CurveOptions options;
  options.levels = 4;
  options.progress = false;
  try {
    measure_curves(*network, calibration_set(4), "s", layer_census(*network, {1, 28, 28}), options);
    FAIL() << "NaN outputs were measured";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("are not finite"), std::string::npos) << e.what();
  }
}

TEST(Curves, SparseLayersAreMeasuredOnlyAtOrAboveTheirSparsity) {
  auto network = fresh("lenet5");
  const auto& weight = network->layers()[2].weight;
  network->set_mask(2, mask_keeping(magnitude_order(weight, {}), weight.numel() * 6 / 10, weight.sizes()));
  network->apply_masks();
  expect_curves_match_plain_loop(*network, "mse");
  CurveOptions options;
  options.levels = 10;
  options.tail = false;
  options.progress = false;
  const CurveSet curves =
      measure_curves(*network, calibration_set(8), "s", layer_census(*network, {1, 28, 28}), options);
  const auto& curve = curves.layers[2];
  EXPECT_NEAR(curve.sparsity.front(), 0.4, 1e-3);
  EXPECT_EQ(curve.distortion.front(), 0.0);
  EXPECT_EQ(curve.sparsity.size(), 8u);  // 0.4 (current), 0.5, ..., 0.9, the one-weight level, 1.0
  EXPECT_EQ(curve.kept[curve.kept.size() - 2], 1);
  EXPECT_EQ(curves.layers[0].sparsity.size(), 12u);
}

TEST(Curves, CacheResumesAndAChangedKeyNeverReuses) {
  TempDir dir;
  auto network = fresh("mlp");
  const Dataset data = calibration_set(8);
  const auto infos = layer_census(*network, {1, 28, 28});
  CurveOptions options;
  options.levels = 4;
  options.progress = false;
  options.cache_dir = dir.path();
  const CurveSet first = measure_curves(*network, data, "synthetic", infos, options);
  // Plant a sentinel in the cache: a resumed run must return it, proving it did not re-measure.
  std::filesystem::path cache;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) cache = entry.path();
  auto json = nlohmann::json::parse(read_file(cache.string()));
  json["curves"]["layers"][1]["distortion"][2] = 123.0;
  write_file_atomic(cache.string(), json.dump());
  EXPECT_EQ(measure_curves(*network, data, "synthetic", infos, options).layers[1].distortion[2], 123.0);
  // A different metric, calibration or model is a different key.
  options.metric = "worst";
  EXPECT_NE(measure_curves(*network, data, "synthetic", infos, options).layers[1].distortion[2], 123.0);
  options.metric = "mse";
  EXPECT_NE(measure_curves(*network, data, "other calibration", infos, options).layers[1].distortion[2],
            123.0);
  {
    torch::NoGradGuard no_grad;
    network->layers()[0].weight.mul_(1.01);
  }
  EXPECT_NE(measure_curves(*network, data, "synthetic", infos, options).layers[1].distortion[2], 123.0);
  (void)first;
}

TEST(Curves, BatchNormAwarePointsRunEachBatchWithItsOwnStatistics) {
  TempDir dir;
  auto network = fresh("resnet20");
  network->save(dir.file("dense.pt"));
  const Dataset data = calibration_set(16);
  std::vector<torch::Tensor> buffers_before;
  for (const auto& buffer : network->buffers()) buffers_before.push_back(buffer.clone());
  CurveOptions options;
  options.levels = 2;
  options.batch_size = 8;
  options.metric = "mse";
  options.recalibrate_bn = true;
  options.progress = false;
  const auto infos = layer_census(*network, {1, 28, 28});
  const CurveSet curves = measure_curves(*network, data, "s", infos, options);
  EXPECT_TRUE(curves.bn_recalibrated);
  // The network is left exactly as it was.
  const auto buffers_after = network->buffers();
  for (size_t b = 0; b < buffers_before.size(); ++b)
    EXPECT_TRUE(torch::equal(buffers_before[b], buffers_after[b]));
  options.plain = true;
  const CurveSet plain = measure_curves(*network, data, "s", infos, options);
  torch::NoGradGuard no_grad;
  const auto x = data.batch(torch::arange(data.size())).images;
  network->set_training(false);
  const auto reference = network->forward(x);
  for (size_t layer : {size_t{0}, size_t{9}, size_t{21}}) {
    for (size_t k = 1; k < curves.layers[layer].kept.size(); ++k) {
      auto copy = load_network(dir.file("dense.pt"));
      copy->layers()[layer].weight.detach().mul_(oracle_mask(*copy, layer, curves.layers[layer].kept[k]));
      copy->set_training(true);
      const auto outputs = torch::cat({copy->forward(x.slice(0, 0, 8)), copy->forward(x.slice(0, 8, 16))});
      const double expected = output_distortion(outputs, reference, "mse");
      EXPECT_NEAR(curves.layers[layer].distortion[k], expected, 1e-6 * (1 + expected)) << layer << " " << k;
      EXPECT_NEAR(plain.layers[layer].distortion[k], expected, 1e-6 * (1 + expected)) << layer << " " << k;
    }
  }
}

TEST(Prune, MeasuredSparsityEqualsThePlan) {
  auto network = fresh("resnet20");
  CurveOptions options;
  options.levels = 20;
  options.progress = false;
  const auto infos = layer_census(*network, {1, 28, 28});
  const CurveSet curves = measure_curves(*network, calibration_set(8), "s", infos, options);
  RdOptions rd;
  rd.sparsity_target = 0.8;
  const Plan plan = allocate_rd(curves, rd);
  apply_plan(*network, plan, "plan");
  const auto after = layer_census(*network, {1, 28, 28});
  int64_t kept = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    const int64_t nonzero = (network->layers()[i].weight != 0).sum().item<int64_t>();
    EXPECT_EQ(nonzero, plan.layers[i].kept) << after[i].name;
    EXPECT_NEAR(after[i].sparsity, plan.layers[i].sparsity(), 1e-12);
    kept += nonzero;
  }
  EXPECT_LE(kept, static_cast<int64_t>(0.2 * 270608));
  // A plan that would un-prune weights is refused; so is a plan for another model.
  Plan denser = plan;
  denser.layers[3].kept = denser.layers[3].weights;
  EXPECT_THROW(apply_plan(*network, denser, "plan"), Error);
  auto other = fresh("mlp");
  EXPECT_THROW(apply_plan(*other, plan, "plan"), Error);
}

TEST(Curves, TaylorEstimatesShareTheLevelsAndTrackTheMeasuredCurves) {
  auto network = fresh("lenet5");
  const Dataset data = calibration_set(32);
  const auto infos = layer_census(*network, {1, 28, 28});
  for (const std::string metric : {"kl", "mse"}) {
    CurveOptions options;
    options.levels = 10;
    options.metric = metric;
    options.progress = false;
    const CurveSet measured = measure_curves(*network, data, "s", infos, options);
    options.estimator = "taylor";
    const auto before = fingerprint(*network);
    const CurveSet estimated = measure_curves(*network, data, "s", infos, options);
    EXPECT_EQ(fingerprint(*network), before);
    for (const auto& weight : network->parameters()) EXPECT_FALSE(weight.grad().defined());
    ASSERT_EQ(estimated.layers.size(), measured.layers.size());
    std::vector<double> a, b;
    for (size_t i = 0; i < measured.layers.size(); ++i) {
      const auto& m = measured.layers[i];
      const auto& e = estimated.layers[i];
      EXPECT_EQ(e.kept, m.kept) << m.name;
      EXPECT_EQ(e.sparsity, m.sparsity) << m.name;
      EXPECT_EQ(e.distortion.front(), 0.0);
      for (size_t k = 1; k < e.distortion.size(); ++k) EXPECT_GE(e.distortion[k], e.distortion[k - 1]);
      // Where a few weights go, the second-order estimate is close; compare the shape overall.
      for (size_t k = 1; k < m.distortion.size(); ++k) {
        a.push_back(std::log1p(m.distortion[k]));
        b.push_back(std::log1p(e.distortion[k]));
      }
    }
    const auto x = torch::tensor(a, torch::kFloat64);
    const auto y = torch::tensor(b, torch::kFloat64);
    const double r = ((x - x.mean()) * (y - y.mean())).sum().item<double>() /
                     std::sqrt(((x - x.mean()).pow(2).sum() * (y - y.mean()).pow(2).sum()).item<double>());
    EXPECT_GT(r, 0.7) << metric;
  }
  CurveOptions bad;
  bad.estimator = "hessian";
  EXPECT_THROW(validate(bad), UsageError);
  bad.estimator = "taylor";
  bad.recalibrate_bn = true;
  EXPECT_THROW(validate(bad), UsageError);
}

TEST(Refine, KeepsThePlanThatMeasuresTheLowestJointDistortion) {
  auto network = fresh("lenet5");
  const Dataset data = calibration_set(16);
  CurveOptions options;
  options.metric = "mse";
  options.levels = 10;
  options.progress = false;
  const auto infos = layer_census(*network, {1, 28, 28});
  const CurveSet curves = measure_curves(*network, data, "s", infos, options);
  RdOptions rd;
  rd.sparsity_target = 0.9;
  const Plan first = allocate_rd(curves, rd);
  const auto before = fingerprint(*network);
  int64_t seen = 0;
  const RefineResult result = refine_rd(*network, data, "s", infos, options, rd, {{"rd", first}}, 3,
                                        [&](const std::string& start, int64_t pass, const CurveSet& around) {
                                          EXPECT_EQ(start, "rd");
                                          EXPECT_EQ(pass, ++seen);
                                          EXPECT_EQ(around.layers.size(), curves.layers.size());
                                        });
  EXPECT_EQ(fingerprint(*network), before);
  ASSERT_GE(seen, 1);
  EXPECT_LE(seen, 3);
  EXPECT_NEAR(result.steps[0].measured, joint_distortion(*network, data, first, "mse", 256), 1e-9);
  size_t chosen = 0;
  int chosen_count = 0;
  for (size_t i = 0; i < result.steps.size(); ++i) {
    if (result.steps[i].chosen) {
      chosen = i;
      ++chosen_count;
    }
    EXPECT_GE(result.steps[i].sparsity, 0.9 - 1e-9);
    EXPECT_LE(result.steps[i].pass, seen);
    EXPECT_GE(result.steps[i].trust, 0.0);
  }
  EXPECT_EQ(chosen_count, 1);
  for (const auto& step : result.steps) EXPECT_LE(result.steps[chosen].measured, step.measured);
  EXPECT_NEAR(joint_distortion(*network, data, result.plan, "mse", 256), result.steps[chosen].measured, 1e-9);
}

TEST(Refine, StartsFromEveryPlanGivenAndNeverMeasuresWorseThanAnyOfThem) {
  auto network = fresh("lenet5");
  const Dataset data = calibration_set(16);
  CurveOptions options;
  options.metric = "kl";
  options.levels = 10;
  options.progress = false;
  const auto infos = layer_census(*network, {1, 28, 28});
  RdOptions rd;
  rd.sparsity_target = 0.9;
  const Plan first = allocate_rd(measure_curves(*network, data, "s", infos, options), rd);
  const BaselineOptions baseline{BudgetKind::kParams, 0.9, false};
  const Plan lamp = allocate_baseline("lamp", *network, infos, baseline);
  const Plan uniform = allocate_baseline("uniform", *network, infos, baseline);
  std::vector<std::string> seen;
  const RefineResult result = refine_rd(
      *network, data, "s", infos, options, rd, {{"rd", first}, {"lamp", lamp}, {"uniform", uniform}}, 2,
      [&](const std::string& start, int64_t, const CurveSet&) { seen.push_back(start); });
  // Every start is measured as it is, in order; the search goes on from the lowest.
  ASSERT_GE(result.steps.size(), 3u);
  EXPECT_EQ(result.steps[0].start, "rd");
  EXPECT_EQ(result.steps[1].start, "lamp");
  EXPECT_EQ(result.steps[2].start, "uniform");
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(result.steps[i].pass, 0);
  EXPECT_NEAR(result.steps[1].measured, joint_distortion(*network, data, lamp, "kl", 256), 1e-9);
  EXPECT_NEAR(result.steps[2].measured, joint_distortion(*network, data, uniform, "kl", 256), 1e-9);
  size_t best = 0;
  for (size_t i = 1; i < 3; ++i) {
    if (result.steps[i].measured < result.steps[best].measured) best = i;
  }
  ASSERT_FALSE(seen.empty());
  for (const auto& start : seen) EXPECT_EQ(start, result.steps[best].start);
  for (size_t i = 3; i < result.steps.size(); ++i) EXPECT_EQ(result.steps[i].start, result.steps[best].start);
  int chosen = 0;
  for (const auto& step : result.steps) {
    chosen += step.chosen ? 1 : 0;
    EXPECT_LE(joint_distortion(*network, data, result.plan, "kl", 256), step.measured + 1e-9);
  }
  EXPECT_EQ(chosen, 1);
}

// A fresh LeNet-5 searched on 16 calibration images with 10-level KL curves, to 90% of its weights.
struct SmallSearch {
  std::unique_ptr<Network> owner = fresh("lenet5");
  Network* network = owner.get();
  Dataset data = calibration_set(16);
  CurveOptions options = [] {
    CurveOptions o;
    o.levels = 10;
    o.progress = false;
    return o;
  }();
  std::vector<LayerInfo> infos = layer_census(*network, {1, 28, 28});
  RdOptions rd = [] {
    RdOptions o;
    o.sparsity_target = 0.9;
    return o;
  }();
};

TEST(Refine, BlendsTheLowestStartWithTheNextLowestAndKeepsTheLowestOfAll) {
  const SmallSearch search;
  const auto& [owner, network, data, options, infos, rd] = search;
  const BaselineOptions baseline{BudgetKind::kParams, 0.9, false};
  const std::vector<RefineStart> starts = {
      {"rd", allocate_rd(measure_curves(*network, data, "s", infos, options), rd)},
      {"lamp", allocate_baseline("lamp", *network, infos, baseline)},
      {"uniform", allocate_baseline("uniform", *network, infos, baseline)},
      {"erk", allocate_baseline("erk", *network, infos, baseline)}};
  const auto before = fingerprint(*network);
  const RefineResult result = refine_rd(*network, data, "s", infos, options, rd, starts, 0, {}, {}, 2);
  EXPECT_EQ(fingerprint(*network), before);
  // The four starts, then the lowest halfway towards the second and the third lowest.
  ASSERT_EQ(result.steps.size(), 6u);
  std::vector<size_t> order = {0, 1, 2, 3};
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return result.steps[x].measured < result.steps[y].measured; });
  for (size_t k = 1; k <= 2; ++k) {
    const RefineStep& step = result.steps[3 + k];
    EXPECT_EQ(step.start, starts[order[0]].name + "+" + starts[order[k]].name);
    EXPECT_EQ(step.pass, 0);
    const Plan blend = blend_plans(starts[order[0]].plan, starts[order[k]].plan, 0.5, infos, rd);
    EXPECT_GE(blend.sparsity_achieved(), 0.9 - 1e-9);
    EXPECT_NEAR(step.measured, joint_distortion(*network, data, blend, "kl", 256), 1e-9);
  }
  const RefineStep* chosen = nullptr;
  for (const auto& step : result.steps) {
    if (step.chosen) chosen = &step;
  }
  ASSERT_NE(chosen, nullptr);
  for (const auto& step : result.steps) EXPECT_LE(chosen->measured, step.measured);
  // Without blends only the starts are measured.
  EXPECT_EQ(refine_rd(*network, data, "s", infos, options, rd, starts, 0).steps.size(), 4u);
  EXPECT_THROW(refine_rd(*network, data, "s", infos, options, rd, starts, 0, {}, {}, -1), UsageError);
}

TEST(Refine, ExchangesJudgeEveryOrderedPairOfLayersFromTheLowestPlanSoFar) {
  const SmallSearch search;
  const auto& [owner, network, data, options, infos, rd] = search;
  ASSERT_EQ(infos.size(), 5u);
  const Plan lamp =
      allocate_baseline("lamp", *network, infos, BaselineOptions{BudgetKind::kParams, 0.9, false});
  const auto before = fingerprint(*network);
  const RefineResult result =
      refine_rd(*network, data, "s", infos, options, rd, {{"lamp", lamp}}, 0, {}, {}, 0, /*exchanges=*/2);
  EXPECT_EQ(fingerprint(*network), before);
  // The start, then in the first round every ordered pair of the five layers, a quarter of the
  // giving layer's kept weights moved.
  ASSERT_GE(result.steps.size(), 21u);
  EXPECT_EQ(result.steps[0].exchanged, 0);
  size_t k = 1;
  for (size_t i = 0; i < infos.size(); ++i) {
    for (size_t j = 0; j < infos.size(); ++j) {
      if (i == j) continue;
      const RefineStep& step = result.steps[k++];
      EXPECT_EQ(step.start, "lamp " + infos[i].name + ">" + infos[j].name);
      EXPECT_EQ(step.pass, 1);
      EXPECT_EQ(step.exchanged, kExchangeFraction);
      const Plan moved = exchange_plan(lamp, i, j, kExchangeFraction, infos, rd);
      EXPECT_GE(moved.sparsity_achieved(), 0.9 - 1e-9);
      EXPECT_NEAR(step.measured, joint_distortion(*network, data, moved, "kl", 256), 1e-9);
    }
  }
  // The second round starts from the lowest plan of the first, with the same share if that moved
  // and half of it if the start stayed lowest.
  const std::vector<size_t> order =
      lowest_first(std::vector<RefineStep>(result.steps.begin(), result.steps.begin() + 21));
  const bool moved = order.front() != 0;
  ASSERT_GT(result.steps.size(), 21u);
  for (size_t i = 21; i < result.steps.size(); ++i) {
    EXPECT_EQ(result.steps[i].pass, 2);
    EXPECT_EQ(result.steps[i].exchanged, moved ? kExchangeFraction : kExchangeFraction / 2);
  }
  const RefineStep* chosen = nullptr;
  for (const auto& step : result.steps) {
    if (step.chosen) chosen = &step;
  }
  ASSERT_NE(chosen, nullptr);
  for (const auto& step : result.steps) EXPECT_LE(chosen->measured, step.measured);
  EXPECT_NEAR(joint_distortion(*network, data, result.plan, "kl", 256), chosen->measured, 1e-9);
  EXPECT_THROW(refine_rd(*network, data, "s", infos, options, rd, {{"lamp", lamp}}, 0, {}, {}, 0, -1),
               UsageError);
}

TEST(Refine, RulePlanGivesAStartsOwnPlanOrTheBlendOfTwoAtAnotherTarget) {
  auto network = fresh("lenet5");
  const auto infos = layer_census(*network, {1, 28, 28});
  RdOptions rd;
  rd.sparsity_target = 0.7;
  const BaselineOptions baseline{BudgetKind::kParams, 0.7, false};
  // Names with a '+' of their own (uniform+) still part correctly.
  const std::vector<RefineStart> starts = {
      {"lamp", allocate_baseline("lamp", *network, infos, baseline)},
      {"uniform+", allocate_baseline("uniform+", *network, infos, baseline)},
      {"erk", allocate_baseline("erk", *network, infos, baseline)}};
  const auto kept = [](const Plan& plan) {
    std::vector<int64_t> counts;
    for (const auto& layer : plan.layers) counts.push_back(layer.kept);
    return counts;
  };
  ASSERT_TRUE(rule_plan("uniform+", starts, infos, rd).has_value());
  EXPECT_EQ(kept(*rule_plan("uniform+", starts, infos, rd)), kept(starts[1].plan));
  const auto blend = rule_plan("uniform++erk", starts, infos, rd);
  ASSERT_TRUE(blend.has_value());
  EXPECT_EQ(kept(*blend), kept(blend_plans(starts[1].plan, starts[2].plan, 0.5, infos, rd)));
  EXPECT_NEAR(blend->sparsity_achieved(), 0.7, 0.01);
  const auto other_way = rule_plan("lamp+uniform+", starts, infos, rd);
  ASSERT_TRUE(other_way.has_value());
  EXPECT_EQ(kept(*other_way), kept(blend_plans(starts[0].plan, starts[1].plan, 0.5, infos, rd)));
  EXPECT_FALSE(rule_plan("global", starts, infos, rd).has_value());
  EXPECT_FALSE(rule_plan("lamp+global", starts, infos, rd).has_value());
  EXPECT_FALSE(rule_plan("lamp+lamp", starts, infos, rd).has_value());
  // No blend when the constraints cannot meet the budget between the two (every layer at most 50%
  // sparse cannot make 70%).
  RdOptions bounded = rd;
  bounded.max_sparsity = 0.5;
  EXPECT_FALSE(rule_plan("lamp+erk", starts, infos, bounded).has_value());
  EXPECT_TRUE(rule_plan("lamp", starts, infos, bounded).has_value());  // a start's own plan is as given
  // Which rules plan from rd's curves, uniform+'s own '+' included.
  for (const std::string name : {"rd", "rd+erk", "lamp+rd", "uniform++rd", "rd+uniform+"})
    EXPECT_TRUE(rule_uses_rd(name)) << name;
  for (const std::string name : {"lamp", "uniform+", "erk+uniform+", "uniform++erk", "global", "", "+"})
    EXPECT_FALSE(rule_uses_rd(name)) << name;
}

TEST(Refine, RecoveredDistortionIsTheDistortionLeftAfterFineTuningThePrunedNetwork) {
  TempDir dir;
  auto network = fresh("resnet20");
  const Dataset calibration = calibration_set(16);
  const Dataset train_data = calibration_set(48);
  const auto infos = layer_census(*network, {1, 28, 28});
  const Plan plan =
      allocate_baseline("lamp", *network, infos, BaselineOptions{BudgetKind::kParams, 0.8, false});
  Recovery recovery;
  recovery.steps = 3;
  recovery.data = &train_data;
  recovery.train.batch_size = 8;
  recovery.train.lr = 0.01;
  recovery.train.seed = 5;
  recovery.recalibrate_bn = true;
  const torch::Tensor reference = reference_outputs(*network, calibration, 256);
  const auto before = fingerprint(*network);
  const double recovered = recovered_distortion(*network, calibration, plan, "kl", 256, reference, recovery);
  // Parameters, batch-norm statistics and masks are as they were; the same seed gives the same value.
  EXPECT_EQ(fingerprint(*network), before);
  EXPECT_DOUBLE_EQ(recovered_distortion(*network, calibration, plan, "kl", 256, reference, recovery),
                   recovered);
  // By hand: prune, re-estimate batch norm, fine-tune, measure in evaluation mode.
  network->save(dir.file("copy.pt"));
  auto copy = load_network(dir.file("copy.pt"));
  apply_plan(*copy, plan, "test");
  recalibrate_batch_norm(*copy, calibration);
  TrainOptions train_options = recovery.train;
  train_options.steps = 3;
  train_options.progress = false;
  train(*copy, train_data, train_options);
  copy->set_training(false);
  torch::NoGradGuard no_grad;
  const double by_hand = output_distortion(network_outputs(*copy, calibration, 256), reference, "kl");
  EXPECT_NEAR(recovered, by_hand, 1e-6 * std::max(1.0, by_hand));
  EXPECT_GT(std::abs(recovered - joint_distortion(*network, calibration, plan, "kl", 256, true, reference)),
            1e-9);  // fine-tuning moved it
  // On other images: the recovered network measured there, against the dense outputs there; the
  // network recovery left comes back on request.
  const Dataset judge = train_data.slice(16, 32);
  recovery.judge = &judge;
  const torch::Tensor judge_reference = reference_outputs(*network, judge, 256);
  // The reference recovery measures against is the dense outputs on the judging images (on the
  // calibration images without them), and none when judged by labels.
  EXPECT_TRUE(torch::equal(judging_reference(*network, calibration, recovery, 256), judge_reference));
  {
    Recovery on_calibration = recovery;
    on_calibration.judge = nullptr;
    EXPECT_TRUE(torch::equal(judging_reference(*network, calibration, on_calibration, 256), reference));
    on_calibration.judge_by = "error";
    EXPECT_FALSE(judging_reference(*network, calibration, on_calibration, 256).defined());
    on_calibration.judge_by = "loss";
    EXPECT_FALSE(judging_reference(*network, calibration, on_calibration, 256).defined());
    // Judged as pruned: against the outputs on the judging images when there are any, on the
    // calibration images otherwise.
    Recovery as_pruned = recovery;
    as_pruned.steps = 0;
    EXPECT_TRUE(judged_by_recovery(as_pruned));
    EXPECT_TRUE(torch::equal(judging_reference(*network, calibration, as_pruned, 256), judge_reference));
    as_pruned.judge = nullptr;
    EXPECT_FALSE(judged_by_recovery(as_pruned));
    EXPECT_TRUE(torch::equal(judging_reference(*network, calibration, as_pruned, 256), reference));
  }
  NetworkState left;
  const double judged =
      recovered_distortion(*network, calibration, plan, "kl", 256, judge_reference, recovery, &left);
  EXPECT_EQ(fingerprint(*network), before);
  EXPECT_NEAR(judged, output_distortion(network_outputs(*copy, judge, 256), judge_reference, "kl"),
              1e-6 * std::max(1.0, judged));
  {
    const StateGuard guard(*network);
    restore(*network, left);
    for (size_t i = 0; i < copy->parameters().size(); ++i)
      EXPECT_TRUE(torch::allclose(network->parameters()[i], copy->parameters()[i], 1e-5, 1e-6));
    for (size_t i = 0; i < copy->buffers().size(); ++i)
      EXPECT_TRUE(torch::allclose(network->buffers()[i], copy->buffers()[i], 1e-5, 1e-6));
  }
  EXPECT_EQ(fingerprint(*network), before);
  // Judged by the loss: the recovered network's mean cross-entropy on the judging images' labels.
  recovery.judge_by = "loss";
  const double loss = recovered_distortion(*network, calibration, plan, "kl", 256, judge_reference, recovery);
  EXPECT_NEAR(loss, evaluate(*copy, judge).loss, 1e-6 * std::max(1.0, loss));
  EXPECT_GT(std::abs(loss - judged), 1e-6);
  EXPECT_EQ(fingerprint(*network), before);
  // Judged by the error: the fraction of the judging images the recovered network misclassifies.
  recovery.judge_by = "error";
  const double error =
      recovered_distortion(*network, calibration, plan, "kl", 256, judge_reference, recovery);
  const EvalResult copy_eval = evaluate(*copy, judge);
  EXPECT_NEAR(error, 1.0 - copy_eval.top1, 1e-9);
  int64_t wrong = 0;
  for (const uint8_t hit : copy_eval.hits) wrong += hit == 0 ? 1 : 0;
  EXPECT_NEAR(error * static_cast<double>(judge.size()), static_cast<double>(wrong), 1e-6);
  EXPECT_EQ(fingerprint(*network), before);
  recovery.judge_by = "accuracy";
  EXPECT_THROW(recovered_distortion(*network, calibration, plan, "kl", 256, reference, recovery), UsageError);
  // No recovery steps: the network as pruned, batch norm re-estimated, measured on the judging
  // images; no fine-tuning data needed.
  recovery.judge_by = "distortion";
  recovery.steps = 0;
  recovery.data = nullptr;
  auto pruned = load_network(dir.file("copy.pt"));
  apply_plan(*pruned, plan, "test");
  recalibrate_batch_norm(*pruned, calibration);
  pruned->set_training(false);
  const double as_pruned = output_distortion(network_outputs(*pruned, judge, 256), judge_reference, "kl");
  EXPECT_NEAR(recovered_distortion(*network, calibration, plan, "kl", 256, judge_reference, recovery),
              as_pruned, 1e-6 * std::max(1.0, as_pruned));
  EXPECT_EQ(fingerprint(*network), before);
  recovery.steps = -1;
  EXPECT_THROW(recovered_distortion(*network, calibration, plan, "kl", 256, reference, recovery), Error);
  recovery.steps = 3;  // fine-tuning steps need the data to fine-tune on
  EXPECT_THROW(recovered_distortion(*network, calibration, plan, "kl", 256, reference, recovery), Error);
}

TEST(Refine, WithRecoveryEveryPlanIsJudgedAfterFineTuning) {
  auto network = fresh("lenet5");
  const Dataset data = calibration_set(16);
  const Dataset train_data = calibration_set(32);
  CurveOptions options;
  options.levels = 10;
  options.progress = false;
  const auto infos = layer_census(*network, {1, 28, 28});
  RdOptions rd;
  rd.sparsity_target = 0.9;
  const Plan first = allocate_rd(measure_curves(*network, data, "s", infos, options), rd);
  const Plan erk =
      allocate_baseline("erk", *network, infos, BaselineOptions{BudgetKind::kParams, 0.9, false});
  Recovery recovery;
  recovery.steps = 2;
  recovery.data = &train_data;
  recovery.train.batch_size = 8;
  recovery.train.lr = 0.05;
  recovery.keep_recovered = true;
  const auto before = fingerprint(*network);
  const RefineResult result =
      refine_rd(*network, data, "s", infos, options, rd, {{"rd", first}, {"erk", erk}}, 1, {}, recovery);
  EXPECT_EQ(fingerprint(*network), before);
  const torch::Tensor reference = reference_outputs(*network, data, 256);
  ASSERT_GE(result.steps.size(), 2u);
  EXPECT_NEAR(result.steps[1].measured,
              recovered_distortion(*network, data, erk, "kl", 256, reference, recovery), 1e-9);
  const RefineStep* chosen = nullptr;
  for (const auto& step : result.steps) {
    EXPECT_EQ(step.recovery_steps, 2);
    if (step.chosen) chosen = &step;
  }
  ASSERT_NE(chosen, nullptr);
  for (const auto& step : result.steps) EXPECT_LE(chosen->measured, step.measured);
  EXPECT_NEAR(recovered_distortion(*network, data, result.plan, "kl", 256, reference, recovery),
              chosen->measured, 1e-9);
  // The result keeps the chosen plan's recovered network.
  ASSERT_TRUE(result.recovered.has_value());
  const StateGuard guard(*network);
  restore(*network, *result.recovered);
  torch::NoGradGuard no_grad;
  EXPECT_NEAR(output_distortion(network_outputs(*network, data, 256), reference, "kl"), chosen->measured,
              1e-9);
}

}  // namespace
}  // namespace rdprune
