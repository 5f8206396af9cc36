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
#include "rdprune/recovery.h"
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

TEST(Curves, ReusedLayersAreChargedWhatMeasuringThemCost) {
  TempDir dir;
  const Dataset data = calibration_set(8);
  CurveOptions options;
  options.levels = 4;
  options.cache_dir = dir.path();
  auto measuring = fresh("mlp");
  const auto infos = layer_census(*measuring, {1, 28, 28});
  const ComputeUsage before = measuring->usage();
  measure_curves(*measuring, data, "synthetic", infos, options);
  const int64_t measured_samples = measuring->usage().forward_samples - before.forward_samples;
  EXPECT_EQ(measuring->usage().reused_forward_samples, 0);
  // Another object of the same model reuses every layer: it runs no forward pass and is charged
  // the passes (and time) the first measurement spent on the layers, all but its reference pass.
  auto reusing = fresh("mlp");
  const int64_t made = reusing->usage().forward_samples;  // what building the model ran
  measure_curves(*reusing, data, "synthetic", infos, options);
  EXPECT_EQ(reusing->usage().forward_samples, made);
  EXPECT_GT(reusing->usage().reused_forward_samples, measured_samples / 2);
  EXPECT_LT(reusing->usage().reused_forward_samples, measured_samples);
  EXPECT_GT(reusing->usage().reused_seconds, 0.0);
  // A cache written before costs were kept still resumes, charged nothing.
  std::filesystem::path cache;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) cache = entry.path();
  auto json = nlohmann::json::parse(read_file(cache.string()));
  json.erase("costs");
  write_file_atomic(cache.string(), json.dump());
  auto old = fresh("mlp");
  measure_curves(*old, data, "synthetic", infos, options);
  EXPECT_EQ(old->usage().forward_samples, made);
  EXPECT_EQ(old->usage().reused_forward_samples, 0);
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

TEST(Distortion, KlIsNeverNegativeWhereTheOutputsHardlyMove) {
  // One logit moved by a float's last bit: the KL divergence is 0 to rounding, which left alone
  // comes out as -1e-17 for about a third of these seeds, and curves refuse negative distortions.
  for (int seed = 0; seed < 200; ++seed) {
    torch::manual_seed(seed);
    const torch::Tensor reference = torch::randn({4, 10});
    torch::Tensor outputs = reference.clone();
    const float moved = outputs[0][seed % 10].item<float>();
    outputs[0][seed % 10] = std::nextafter(moved, 10.0f);
    const double kl = output_distortion(outputs, reference, "kl");
    EXPECT_GE(kl, 0.0) << seed;
    EXPECT_LT(kl, 1e-12) << seed;
  }
}

TEST(Prune, MeasuredSparsityEqualsThePlan) {
  auto network = fresh("resnet20");
  CurveOptions options;
  options.levels = 20;
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

TEST(Refine, PassesKeepThePlanThatJudgesLowestAndNeverWorseThanTheStart) {
  auto network = fresh("lenet5");
  const Dataset data = calibration_set(16);
  CurveOptions options;
  options.metric = "mse";
  options.levels = 10;
  const auto infos = layer_census(*network, {1, 28, 28});
  const CurveSet curves = measure_curves(*network, data, "s", infos, options);
  RdOptions rd;
  rd.sparsity_target = 0.9;
  const Plan first = allocate_rd(curves, rd);
  const auto before = fingerprint(*network);
  JudgeInfo info;
  info.metric = "mse";
  PlanSearch search(joint_distortion_judge(*network, data, options, false), info, nullptr);
  search.judge("rd", first);
  int64_t seen = 0;
  const int64_t passes = refine_passes(search, *network, data, "s", infos, options, rd, 3,
                                       [&](int64_t pass, const CurveSet& around) {
                                         EXPECT_EQ(pass, ++seen);
                                         EXPECT_EQ(around.layers.size(), curves.layers.size());
                                       });
  EXPECT_EQ(passes, seen);
  EXPECT_EQ(fingerprint(*network), before);
  ASSERT_GE(seen, 1);
  EXPECT_LE(seen, 3);
  const std::vector<RefineStep> steps = search.finish();
  EXPECT_NEAR(steps[0].measured, joint_distortion(*network, data, first, "mse", 256), 1e-9);
  int chosen = 0;
  for (const auto& step : steps) {
    chosen += step.chosen ? 1 : 0;
    EXPECT_EQ(step.start, "rd");
    EXPECT_GE(step.sparsity, 0.9 - 1e-9);
    EXPECT_LE(step.pass, seen);
    EXPECT_LE(search.best_step().measured, step.measured);
  }
  EXPECT_EQ(chosen, 1);
  EXPECT_TRUE(steps[search.best_index()].chosen);
  EXPECT_NEAR(joint_distortion(*network, data, search.best(), "mse", 256), search.best_step().measured, 1e-9);
  // A plan judged already is recognised by its kept counts.
  EXPECT_TRUE(search.seen(first));
}

TEST(Recovery, TheJudgementIsTheDistortionLeftAfterFineTuningThePrunedNetwork) {
  TempDir dir;
  auto network = fresh("resnet20");
  const Dataset calibration = calibration_set(16);
  const Dataset train_data = calibration_set(48);
  const Dataset judging = train_data.slice(16, 32);
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
  const torch::Tensor reference = reference_outputs(*network, judging, 256);
  const auto before = fingerprint(*network);
  const PlanJudge judge = recovery_judge(*network, calibration, judging, recovery);
  NetworkState recovered_state;
  const double recovered = judge(plan, &recovered_state);
  // Parameters, batch-norm statistics and masks are as they were; the same seed gives the same value.
  EXPECT_EQ(fingerprint(*network), before);
  EXPECT_DOUBLE_EQ(judge(plan, nullptr), recovered);
  // By hand: prune, re-estimate batch norm, fine-tune, measure in evaluation mode on the judging images.
  network->save(dir.file("copy.pt"));
  auto copy = load_network(dir.file("copy.pt"));
  apply_plan(*copy, plan, "test");
  recalibrate_batch_norm(*copy, calibration);
  TrainOptions train_options = recovery.train;
  train_options.steps = 3;
  const int64_t steps_before = copy->usage().train_steps;
  train(*copy, train_data, train_options);
  EXPECT_EQ(copy->usage().train_steps - steps_before, 3);  // every optimizer step is counted
  copy->set_training(false);
  {
    torch::NoGradGuard no_grad;
    const double by_hand = output_distortion(network_outputs(*copy, judging, 256), reference, "kl");
    EXPECT_NEAR(recovered, by_hand, 1e-6 * std::max(1.0, by_hand));
  }
  // The network the judgement left comes back on request: the hand-made one.
  restore(*network, recovered_state);
  EXPECT_EQ(fingerprint(*network), fingerprint(*copy));
  restore(*network, snapshot(*load_network(dir.file("copy.pt"))));
  // By the error: the fraction of the judging images the recovered network misclassifies.
  recovery.judge_by = "error";
  const double error = recovery_judge(*network, calibration, judging, recovery)(plan, nullptr);
  EXPECT_NEAR(error, 1.0 - evaluate(*copy, judging, 256).top1, 1e-12);
  recovery.judge_by = "accuracy";
  EXPECT_THROW(recovery_judge(*network, calibration, judging, recovery), UsageError);
}

}  // namespace
}  // namespace rdprune
