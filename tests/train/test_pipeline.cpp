#include <filesystem>
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "rdprune/additivity.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/magnitude_baselines.h"
#include "rdprune/masks.h"
#include "rdprune/pipeline.h"
#include "rdprune/sample_order.h"

namespace rdprune {
namespace {
using testing::TempDir;

DatasetSplits toy_data(const TempDir& dir) {
  testing::write_idx_dataset(dir.path(), 256, 64, false);
  DatasetOptions options;
  options.name = "fashion-mnist";
  options.data_dir = dir.path();
  return load_dataset(options);
}

std::unique_ptr<Network> fresh_model(const std::string& arch) {
  torch::manual_seed(0);
  ModelMeta meta;
  meta.arch = arch;
  meta.input_shape = {1, 28, 28};
  meta.num_classes = 10;
  return create_network(meta);
}

std::unique_ptr<Network> trained_lenet(const DatasetSplits& data) {
  auto network = fresh_model("lenet5");
  TrainOptions options;
  options.steps = 40;
  options.batch_size = 32;
  options.lr = 0.05;
  options.progress = false;
  train(*network, data.train, options);
  return network;
}

TEST(Pipeline, RoundTargetsReachTheFinalSparsity) {
  EXPECT_DOUBLE_EQ(round_target("geometric", 0.9, 3, 3), 0.9);
  EXPECT_NEAR(round_target("geometric", 0.9, 1, 2), 1 - std::sqrt(0.1), 1e-12);
  EXPECT_NEAR(round_target("linear", 0.9, 1, 3), 0.3, 1e-12);
}

TEST(Pipeline, IterativeRdGrowsMasksFineTunesAndResumes) {
  TempDir data_dir;
  TempDir out;
  const auto data = toy_data(data_dir);
  auto network = trained_lenet(data);
  const std::string model_path = out.file("dense.pt");
  network->save(model_path);
  PipelineOptions options;
  options.method = "rd";
  options.rd.sparsity_target = 0.9;
  options.rounds = 2;
  options.calib_size = 32;
  options.curves.levels = 20;
  options.finetune.steps = 10;
  options.finetune.lr = 0.01;
  options.finetune.batch_size = 32;
  options.progress = false;
  options.out_dir = out.file("run");
  const PipelineResult result = run_pipeline(network, data, options);
  ASSERT_EQ(result.rounds.size(), 2u);
  EXPECT_GE(result.rounds[0].sparsity_achieved, round_target("geometric", 0.9, 1, 2));
  EXPECT_GE(result.last().sparsity_achieved, 0.9);
  for (const char* file : {"curves.json", "plan.json", "model.pt", "metrics.json"}) {
    EXPECT_TRUE(std::filesystem::exists(out.file(std::string("run/round-2/") + file))) << file;
  }
  // Masks only grow: every layer of round 2 is at least as sparse as in round 1.
  const auto plan1 = plan_from_json(read_file(out.file("run/round-1/plan.json")), "1");
  const auto plan2 = plan_from_json(read_file(out.file("run/round-2/plan.json")), "2");
  for (size_t i = 0; i < plan1.layers.size(); ++i) EXPECT_LE(plan2.layers[i].kept, plan1.layers[i].kept);
  // Masked weights are zero in the saved model.
  auto saved = load_network(out.file("run/round-2/model.pt"));
  for (size_t i = 0; i < saved->layers().size(); ++i) {
    EXPECT_EQ((saved->layers()[i].weight != 0).sum().item<int64_t>(), plan2.layers[i].kept);
  }
  // A rerun resumes from the finished rounds and reports the same figures.
  auto again = load_network(model_path);
  const PipelineResult resumed = run_pipeline(again, data, options);
  EXPECT_TRUE(resumed.rounds[0].resumed);
  EXPECT_TRUE(resumed.rounds[1].resumed);
  EXPECT_DOUBLE_EQ(resumed.last().finetuned.top1, result.last().finetuned.top1);
  EXPECT_EQ(resumed.last().measured_distortion, result.last().measured_distortion);
  ASSERT_EQ(resumed.last().refine.size(), result.last().refine.size());
  for (size_t i = 0; i < result.last().refine.size(); ++i) {
    const RefineStep& a = result.last().refine[i];
    const RefineStep& b = resumed.last().refine[i];
    EXPECT_EQ(a.start, b.start);
    EXPECT_EQ(a.pass, b.pass);
    EXPECT_DOUBLE_EQ(a.trust, b.trust);
    EXPECT_DOUBLE_EQ(a.measured, b.measured);
    EXPECT_DOUBLE_EQ(a.sparsity, b.sparsity);
    EXPECT_EQ(a.recovery_steps, b.recovery_steps);
    EXPECT_EQ(a.chosen, b.chosen);
    EXPECT_EQ(a.recovery_steps, 10);  // auto: min(--finetune-steps, 100)
  }
  // A run with other settings does not take over the directory's rounds.
  auto other = load_network(model_path);
  options.finetune.steps = 11;
  try {
    run_pipeline(other, data, options);
    ADD_FAILURE() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("other settings (finetune, rd)"), std::string::npos) << e.what();
  }
  // Nor do rounds whose settings are not on record.
  std::filesystem::remove(out.file("run/settings.json"));
  options.finetune.steps = 10;
  EXPECT_THROW(run_pipeline(other, data, options), UsageError);
}

TEST(Pipeline, RdStartsFromTheLowestMeasuringPlanThatKeepsItsConstraints) {
  TempDir data_dir;
  const auto data = toy_data(data_dir);
  auto trained = trained_lenet(data);
  TempDir out;
  const std::string dense = out.file("dense.pt");
  trained->save(dense);
  PipelineOptions options;
  options.method = "rd";
  options.rd.sparsity_target = 0.9;
  options.calib_size = 32;
  options.curves.levels = 10;
  options.refine = 0;  // screening only: every start measured, the lowest kept
  options.progress = false;
  options.out_dir = out.file("screen");
  auto network = load_network(dense);
  const RoundResult screened = run_pipeline(network, data, options).last();
  ASSERT_EQ(screened.refine.size(), 6u);  // rd and the five baselines
  EXPECT_EQ(screened.refine[0].start, "rd");
  size_t lowest = 0;
  for (size_t i = 0; i < screened.refine.size(); ++i) {
    EXPECT_EQ(screened.refine[i].pass, 0);
    if (screened.refine[i].measured < screened.refine[lowest].measured) lowest = i;
  }
  EXPECT_TRUE(screened.refine[lowest].chosen);
  ASSERT_TRUE(screened.measured_distortion.has_value());
  EXPECT_DOUBLE_EQ(*screened.measured_distortion, screened.refine[lowest].measured);
  // The kept plan is the lowest start's, and it measures what the round reports.
  const auto plan = plan_from_json(read_file(out.file("screen/round-1/plan.json")), "plan");
  EXPECT_EQ(plan.method, screened.refine[lowest].start);
  auto again = load_network(dense);
  EXPECT_NEAR(joint_distortion(*again, data.train.head(32), plan, "kl", 256), *screened.measured_distortion,
              1e-6);

  // Every rule leaves the --keep-dense layers dense, so every rule still starts.
  options.rd.keep_dense = {"conv2"};
  options.out_dir = out.file("keep");
  network = load_network(dense);
  const RoundResult kept = run_pipeline(network, data, options).last();
  ASSERT_EQ(kept.refine.size(), 6u);
  EXPECT_EQ(kept.refine[0].start, "rd");
  EXPECT_EQ((network->layers()[1].weight == 0).sum().item<int64_t>(), 0);
  // A rule that cannot meet the budget beside the kept layers is no start, and rd still runs:
  // 2,650 weights of LeNet-5's 61,470 are less than conv2's 2,400 with uniform+'s dense conv1 (150)
  // and fifth of fc3 (168).
  options.rd.sparsity_target = 1 - 2650.0 / 61470;
  options.out_dir = out.file("tight");
  network = load_network(dense);
  const RoundResult tight = run_pipeline(network, data, options).last();
  ASSERT_FALSE(tight.refine.empty());
  for (const auto& step : tight.refine) EXPECT_NE(step.start, "uniform+");
  EXPECT_EQ((network->layers()[1].weight == 0).sum().item<int64_t>(), 0);
  options.rd.sparsity_target = 0.9;
  // A plan that breaks --min-sparsity does not start: uniform+ keeps 20% of the last layer, among
  // others.
  options.rd.keep_dense.clear();
  options.rd.min_sparsity = 0.85;
  options.out_dir = out.file("floor");
  network = load_network(dense);
  const RoundResult floored = run_pipeline(network, data, options).last();
  ASSERT_FALSE(floored.refine.empty());
  EXPECT_LT(floored.refine.size(), 6u);
  EXPECT_EQ(floored.refine[0].start, "rd");
  for (const auto& step : floored.refine) EXPECT_NE(step.start, "uniform+");
  options.rd.min_sparsity = 0;

  // --refine-from none and --refine 0: the paper's plan, measured all the same.
  options.rd.keep_dense.clear();
  options.refine_from.clear();
  options.out_dir = out.file("paper");
  network = load_network(dense);
  const RoundResult paper = run_pipeline(network, data, options).last();
  EXPECT_TRUE(paper.refine.empty());
  ASSERT_TRUE(paper.measured_distortion.has_value());
  EXPECT_DOUBLE_EQ(*paper.measured_distortion, screened.refine[0].measured);
}

// A LeNet-5 trained on the toy split, saved as `dense` in `out`.
struct TrainedToy {
  TempDir data_dir;
  DatasetSplits data = toy_data(data_dir);
  TempDir out;
  std::string dense = out.file("dense.pt");
  TrainedToy() { trained_lenet(data)->save(dense); }
};

// rd at 90% on the toy split, with 4 fine-tuning steps to judge plans by.
PipelineOptions judged_rd() {
  PipelineOptions options;
  options.method = "rd";
  options.rd.sparsity_target = 0.9;
  options.calib_size = 32;
  options.curves.levels = 10;
  options.finetune.steps = 4;
  options.finetune.batch_size = 32;
  options.progress = false;
  return options;
}

TEST(Pipeline, WhenFineTuningFollowsPlansAreJudgedByWhatItRecovers) {
  const TrainedToy toy;
  const auto& data = toy.data;
  const auto& out = toy.out;
  const std::string& dense = toy.dense;
  PipelineOptions options = judged_rd();
  options.refine = 0;
  options.refine_from = {"lamp", "erk"};
  options.out_dir = out.file("auto");
  EXPECT_EQ(recovery_steps(options), 4);
  auto network = load_network(dense);
  EXPECT_EQ(blend_count(options), 2);  // auto: plans judged after recovery are blended too
  // auto: the toy's five layers make 20 exchanges a round, so there are two rounds of them.
  EXPECT_EQ(exchange_count(options, 5), kAutoExchanges);
  const RoundResult judged = run_pipeline(network, data, options).last();
  // rd, lamp and erk, then the best halfway towards each of the other two (unless a blend repeats a
  // plan already measured), then the exchanges.
  size_t unexchanged = 0;
  while (unexchanged < judged.refine.size() && judged.refine[unexchanged].exchanged == 0) ++unexchanged;
  ASSERT_GE(unexchanged, 3u);
  ASSERT_LE(unexchanged, 5u);
  for (size_t i = 3; i < unexchanged; ++i) EXPECT_NE(judged.refine[i].start.find('+'), std::string::npos);
  EXPECT_GT(judged.refine.size(), unexchanged + 10);
  ASSERT_LE(judged.refine.size(), unexchanged + 2 * 20);
  for (size_t i = unexchanged; i < judged.refine.size(); ++i) {
    EXPECT_GT(judged.refine[i].exchanged, 0);
    EXPECT_NE(judged.refine[i].start.find('>'), std::string::npos);
  }
  EXPECT_EQ(judge_metric(options), "distortion");  // auto
  const RefineStep* chosen = nullptr;
  for (const auto& step : judged.refine) {
    EXPECT_EQ(step.recovery_steps, 4);
    EXPECT_EQ(step.judged_by, "distortion");
    if (step.chosen) chosen = &step;
  }
  ASSERT_NE(chosen, nullptr);
  // The round's measured distortion stays the pruned plan's, as for every other method.
  const auto plan = plan_from_json(read_file(out.file("auto/round-1/plan.json")), "plan");
  const Dataset calibration = data.train.head(32);
  auto again = load_network(dense);
  ASSERT_TRUE(judged.measured_distortion.has_value());
  EXPECT_NEAR(*judged.measured_distortion, joint_distortion(*again, calibration, plan, "kl", 256), 1e-6);
  // And the recorded judgement is recovered_distortion of the chosen plan, with the round's seed,
  // on the training images after the calibration ones (auto: up to 1024; the toy split has 224).
  EXPECT_EQ(judge_count(options), kAutoJudgeSize);
  const Dataset judge = data.train.slice(32, kAutoJudgeSize);
  ASSERT_EQ(judge.size(), 224);
  Recovery recovery;
  recovery.steps = 4;
  recovery.data = &data.train;
  recovery.train = options.finetune;
  recovery.train.seed = derive_seed(options.finetune.seed, 1);
  recovery.judge = &judge;
  const torch::Tensor reference = reference_outputs(*again, judge, 256);
  EXPECT_NEAR(chosen->measured,
              recovered_distortion(*again, calibration, plan, "kl", 256, reference, recovery), 1e-6);
  // The round's network is the one the judgement measured: recovery ran the round's fine-tuning.
  EXPECT_TRUE(judged.finetune_from_judgement);
  auto kept = load_network(out.file("auto/round-1/model.pt"));
  kept->set_training(false);
  {
    torch::NoGradGuard no_grad;
    EXPECT_NEAR(output_distortion(network_outputs(*kept, judge, 256), reference, "kl"), chosen->measured,
                1e-6);
  }
  // ... and the one fine-tuning the plan by hand gives.
  apply_plan(*again, plan, "test");
  TrainOptions by_hand = recovery.train;
  by_hand.progress = false;
  train(*again, data.train, by_hand);
  for (size_t i = 0; i < kept->parameters().size(); ++i)
    EXPECT_TRUE(torch::allclose(kept->parameters()[i], again->parameters()[i], 1e-5, 1e-6));
  const auto settings = nlohmann::json::parse(read_file(out.file("auto/settings.json")));
  EXPECT_EQ(settings["rd"]["recovery_steps"], 4);
  EXPECT_EQ(settings["rd"]["blends"], 2);
  EXPECT_EQ(settings["rd"]["exchanges"], kAutoExchanges);
  EXPECT_EQ(settings["rd"]["judge_size"], kAutoJudgeSize);
  EXPECT_EQ(settings["rd"]["judge_by"], "distortion");
  again = load_network(dense);

  // --recovery-steps 0: judged as pruned, as without fine-tuning.
  options.recovery_steps = 0;
  EXPECT_EQ(blend_count(options), 0);        // auto: no blends when plans are judged as pruned
  EXPECT_EQ(exchange_count(options, 5), 0);  // ... nor exchanges
  EXPECT_EQ(judge_count(options), 0);        // ... and judged on the calibration set
  EXPECT_EQ(judge_metric(options), "distortion");
  options.judge_size = 512;  // unless judging images are asked for (next test)
  EXPECT_EQ(judge_count(options), 512);
  EXPECT_EQ(judge_metric(options), kAutoPrunedJudgeBy);
  EXPECT_EQ(blend_count(options), 0);
  {
    // Along paths too: the error is auto only for paths judged after recovery.
    PipelineOptions paths = options;
    paths.rounds = 2;
    paths.judge_at = "path";
    EXPECT_EQ(judge_target(paths), "path");
    EXPECT_EQ(judge_metric(paths), "distortion");
  }
  options.judge_size = -1;
  options.out_dir = out.file("zero");
  network = load_network(dense);
  const RoundResult pruned = run_pipeline(network, data, options).last();
  EXPECT_FALSE(pruned.finetune_from_judgement);
  ASSERT_EQ(pruned.refine.size(), 3u);
  for (const auto& step : pruned.refine) {
    EXPECT_EQ(step.recovery_steps, 0);
    EXPECT_EQ(step.judged_by, "distortion");
    if (step.chosen) {
      EXPECT_DOUBLE_EQ(step.measured, *pruned.measured_distortion);
    }
  }
  const auto zero_plan = plan_from_json(read_file(out.file("zero/round-1/plan.json")), "plan");
  EXPECT_NEAR(*pruned.measured_distortion, joint_distortion(*again, calibration, zero_plan, "kl", 256), 1e-6);

  // Fewer recovery steps than the round's fine-tuning: the chosen plan is fine-tuned again.
  options.recovery_steps = 2;
  options.out_dir = out.file("two");
  network = load_network(dense);
  const RoundResult shorter = run_pipeline(network, data, options).last();
  EXPECT_FALSE(shorter.finetune_from_judgement);
  for (const auto& step : shorter.refine) EXPECT_EQ(step.recovery_steps, 2);
  const auto metrics = nlohmann::json::parse(read_file(out.file("two/round-1/metrics.json")));
  EXPECT_EQ(metrics["finetune_from_judgement"], false);
  EXPECT_EQ(
      nlohmann::json::parse(read_file(out.file("auto/round-1/metrics.json")))["finetune_from_judgement"],
      true);

  // Judged by the loss: every plan by its recovered network's cross-entropy on the judging images'
  // labels; the round keeps the lowest one's network, which measures just that.
  options.recovery_steps = -1;
  // A round judged by `by` into out/`by`; every plan's judgement recorded as such, and the chosen
  // one the lowest.
  const auto judged_by = [&](const std::string& by) {
    options.judge_by = by;
    EXPECT_EQ(judge_metric(options), by);
    options.out_dir = out.file(by);
    network = load_network(dense);
    RoundResult round = run_pipeline(network, data, options).last();
    std::optional<RefineStep> lowest;
    for (const auto& step : round.refine) {
      EXPECT_EQ(step.judged_by, by);
      if (step.chosen) lowest = step;
    }
    EXPECT_TRUE(lowest.has_value()) << by;
    for (const auto& step : round.refine) EXPECT_GE(step.measured, lowest ? lowest->measured : 0.0);
    EXPECT_TRUE(round.finetune_from_judgement);
    EXPECT_EQ(nlohmann::json::parse(read_file(out.file(by + "/settings.json")))["rd"]["judge_by"], by);
    return lowest.value_or(RefineStep{});
  };
  const RefineStep lowest_loss = judged_by("loss");
  const RefineStep* lowest = &lowest_loss;
  auto kept_by_loss = load_network(out.file("loss/round-1/model.pt"));
  EXPECT_NEAR(evaluate(*kept_by_loss, judge).loss, lowest->measured, 1e-6);
  const auto loss_metrics = nlohmann::json::parse(read_file(out.file("loss/round-1/metrics.json")));
  EXPECT_EQ(loss_metrics["refine"][0]["judged_by"], "loss");
  // A finished round comes back with its judgements as they were recorded.
  network = load_network(dense);
  const RoundResult resumed = run_pipeline(network, data, options).last();
  EXPECT_TRUE(resumed.resumed);
  EXPECT_EQ(resumed.refine.front().judged_by, "loss");
  // The directory's rounds were judged by the loss: judging by the distortion there is refused.
  options.judge_by = "distortion";
  network = load_network(dense);
  EXPECT_THROW(run_pipeline(network, data, options), UsageError);

  // Judged by the error: the network the round keeps misclassifies just the fraction of the
  // judging images its judgement recorded, and no other plan was judged lower.
  const RefineStep fewest = judged_by("error");
  EXPECT_GE(fewest.measured, 0.0);
  EXPECT_LE(fewest.measured, 1.0);
  auto kept_by_error = load_network(out.file("error/round-1/model.pt"));
  EXPECT_NEAR(1.0 - evaluate(*kept_by_error, judge).top1, fewest.measured, 1e-9);
  // Plans judged as pruned are judged by their distortion whatever --judge-by says.
  options.judge_by = "loss";
  options.recovery_steps = 0;
  EXPECT_EQ(judge_metric(options), "distortion");
}

// --holdout N: the last N training images are a validation split. rd judges its plans on them,
// and neither its recovery nor any method's fine-tuning sees them.
TEST(Pipeline, HeldOutImagesAreJudgedOnAndNeverFineTunedOn) {
  const TrainedToy toy;
  const auto& data = toy.data;
  PipelineOptions options = judged_rd();
  options.refine = 0;
  options.refine_from = {"lamp", "erk"};
  options.holdout = 64;
  options.out_dir = toy.out.file("held");
  auto network = load_network(toy.dense);
  const RoundResult judged = run_pipeline(network, data, options).last();
  const RefineStep* chosen = nullptr;
  for (const auto& step : judged.refine)
    if (step.chosen) chosen = &step;
  ASSERT_NE(chosen, nullptr);
  ASSERT_EQ(data.train.size(), 256);
  const Dataset tuning = data.train.head(192);
  const Dataset held_out = data.train.slice(192, 64);
  const auto plan = plan_from_json(read_file(toy.out.file("held/round-1/plan.json")), "plan");
  auto again = load_network(toy.dense);
  Recovery recovery;
  recovery.steps = 4;
  recovery.data = &tuning;
  recovery.train = options.finetune;
  recovery.train.seed = derive_seed(options.finetune.seed, 1);
  recovery.judge = &held_out;
  const torch::Tensor reference = reference_outputs(*again, held_out, 256);
  EXPECT_NEAR(chosen->measured,
              recovered_distortion(*again, data.train.head(32), plan, "kl", 256, reference, recovery), 1e-6);
  // Judged on the training images after the calibration ones instead, it would measure otherwise.
  const Dataset after_calibration = data.train.slice(32, kAutoJudgeSize);
  Recovery on_training = recovery;
  on_training.judge = &after_calibration;
  EXPECT_GT(std::abs(chosen->measured -
                     recovered_distortion(*again, data.train.head(32), plan, "kl", 256,
                                          reference_outputs(*again, after_calibration, 256), on_training)),
            1e-6);
  EXPECT_EQ(nlohmann::json::parse(read_file(toy.out.file("held/settings.json")))["holdout"], 64);
  // Runs without it record no holdout, as before the option.
  PipelineOptions plain = options;
  plain.holdout = 0;
  plain.out_dir = toy.out.file("plain");
  network = load_network(toy.dense);
  run_pipeline(network, data, plain);
  EXPECT_FALSE(nlohmann::json::parse(read_file(toy.out.file("plain/settings.json"))).contains("holdout"));
  // ... and the held-out directory will not resume under other settings.
  network = load_network(toy.dense);
  plain.out_dir = options.out_dir;
  EXPECT_THROW(run_pipeline(network, data, plain), UsageError);

  // Held-out images no fine-tuning may see: NaN. Held out, the fine-tuned network stays finite;
  // fine-tuned on, they make training diverge.
  const Batch all = data.train.batch(torch::arange(data.train.size()));
  torch::Tensor images = all.images.clone();
  images.narrow(0, 192, 64).fill_(std::numeric_limits<float>::quiet_NaN());
  DatasetSplits poisoned{
      Dataset(images, all.labels, data.train.num_classes(), Normalization{{0.0}, {1.0}}, "poisoned"),
      data.test};
  PipelineOptions baseline = options;
  baseline.method = "global";
  baseline.finetune.steps = 8;  // 256 images: every one is seen
  baseline.out_dir.clear();
  const auto finite = [](Network& net) {
    for (const auto& p : net.parameters())
      if (!torch::isfinite(p).all().item<bool>()) return false;
    return true;
  };
  network = load_network(toy.dense);
  run_pipeline(network, poisoned, baseline);
  EXPECT_TRUE(finite(*network));
  baseline.holdout = 0;
  network = load_network(toy.dense);
  EXPECT_THROW(run_pipeline(network, poisoned, baseline), Error);

  // More held out than leaves images to fine-tune on: a usage error.
  options.holdout = 256 - 32;
  options.out_dir.clear();
  network = load_network(toy.dense);
  EXPECT_THROW(run_pipeline(network, data, options), UsageError);
}

TEST(Pipeline, JudgedAtTheFinalTargetEarlierRoundsTakeTheChosenRulesPlanAtTheirOwnTarget) {
  const TrainedToy toy;
  const auto& data = toy.data;
  const auto& out = toy.out;
  const std::string& dense = toy.dense;
  PipelineOptions options = judged_rd();
  options.rounds = 2;
  options.refine = 1;
  options.refine_from = {"lamp", "uniform+"};
  options.judge_at = "final";
  options.out_dir = out.file("final");
  auto network = load_network(dense);
  const PipelineResult result = run_pipeline(network, data, options);
  const double first = round_target("geometric", 0.9, 1, 2);
  const RoundResult& one = result.rounds.at(0);
  EXPECT_DOUBLE_EQ(one.judged_at, 0.9);
  // rd's, LAMP's and uniform+'s plans at the final target and up to two blends, judged after
  // recovery; no passes before the last round.
  ASSERT_GE(one.refine.size(), 3u);
  ASSERT_LE(one.refine.size(), 5u);
  const RefineStep* chosen = nullptr;
  for (const auto& step : one.refine) {
    EXPECT_EQ(step.pass, 0);
    EXPECT_EQ(step.recovery_steps, 4);
    EXPECT_GE(step.sparsity, 0.9 - 1e-9);
    EXPECT_LT(step.sparsity, 0.92);
    if (step.chosen) chosen = &step;
  }
  ASSERT_NE(chosen, nullptr);
  for (const auto& step : one.refine) EXPECT_LE(chosen->measured, step.measured);
  EXPECT_NE(chosen->start, "rd");  // on this toy another rule leads, so the test sees it carried over
  EXPECT_FALSE(one.finetune_from_judgement);  // the judged network was pruned further than the round's
  // The round's plan is the chosen rule's at the round's own target, from the dense network.
  auto again = load_network(dense);
  const auto infos = layer_census(*again, {1, 28, 28});
  RdOptions rd = options.rd;
  rd.sparsity_target = first;
  const BaselineOptions at_first{BudgetKind::kParams, first, false};
  const std::vector<RefineStart> starts = {
      {"rd", allocate_rd(curves_from_json(read_file(out.file("final/round-1/curves.json")), "curves"), rd)},
      {"lamp", allocate_baseline("lamp", *again, infos, at_first)},
      {"uniform+", allocate_baseline("uniform+", *again, infos, at_first)}};
  const std::optional<Plan> expected = rule_plan(chosen->start, starts, infos, rd);
  ASSERT_TRUE(expected.has_value());
  const Plan plan = plan_from_json(read_file(out.file("final/round-1/plan.json")), "plan");
  ASSERT_EQ(plan.layers.size(), expected->layers.size());
  for (size_t i = 0; i < plan.layers.size(); ++i) EXPECT_EQ(plan.layers[i].kept, expected->layers[i].kept);
  EXPECT_NEAR(plan.sparsity_achieved(), first, 0.01);
  // The last round judges at its own target, which is the final one.
  EXPECT_DOUBLE_EQ(result.rounds.at(1).judged_at, 0.9);
  EXPECT_GE(result.last().sparsity_achieved, 0.9 - 1e-9);
  EXPECT_EQ(nlohmann::json::parse(read_file(out.file("final/round-1/metrics.json")))["judged_at"], 0.9);
  EXPECT_EQ(nlohmann::json::parse(read_file(out.file("final/settings.json")))["rd"]["judge_at"], "final");
  network = load_network(dense);
  const PipelineResult resumed = run_pipeline(network, data, options);
  EXPECT_TRUE(resumed.rounds.at(0).resumed);
  EXPECT_DOUBLE_EQ(resumed.rounds.at(0).judged_at, 0.9);

  // Judged at each round's own target, round 1 judges at its own.
  options.judge_at = "round";
  options.out_dir = out.file("round");
  network = load_network(dense);
  const RoundResult own = run_pipeline(network, data, options).rounds.at(0);
  EXPECT_DOUBLE_EQ(own.judged_at, first);
  for (const auto& step : own.refine) {
    EXPECT_GE(step.sparsity, first - 1e-9);
    EXPECT_LT(step.sparsity, 0.85);  // round 1's plans, well short of the final target
  }

  // Judged as pruned at the final target (no fine-tuning): round 1's measured distortion is still
  // its own plan's, not the final-target plan's the search measured.
  options.judge_at = "final";
  options.finetune.steps = 0;
  options.out_dir = out.file("pruned");
  network = load_network(dense);
  const RoundResult pruned = run_pipeline(network, data, options).rounds.at(0);
  EXPECT_DOUBLE_EQ(pruned.judged_at, 0.9);
  const Plan pruned_plan = plan_from_json(read_file(out.file("pruned/round-1/plan.json")), "plan");
  ASSERT_TRUE(pruned.measured_distortion.has_value());
  again = load_network(dense);
  EXPECT_NEAR(*pruned.measured_distortion,
              joint_distortion(*again, data.train.head(32), pruned_plan, "kl", 256), 1e-6);
  for (const auto& step : pruned.refine) {
    if (step.chosen) {
      EXPECT_GT(std::abs(step.measured - *pruned.measured_distortion), 1e-6);
    }
  }

  // One round, or no allocator to start from: always the round's own target.
  options.rounds = 1;
  EXPECT_EQ(judge_target(options), "round");
  options.rounds = 2;
  options.refine_from.clear();
  EXPECT_EQ(judge_target(options), "round");
}

TEST(Pipeline, AutoExchangesOnlyWhereARoundOfThemJudgesFewPlans) {
  PipelineOptions options = judged_rd();
  // Judged after recovery: two rounds of exchanges up to 8 layers (56 plans a round), none beyond.
  EXPECT_EQ(exchange_count(options, 2), kAutoExchanges);
  EXPECT_EQ(exchange_count(options, 8), kAutoExchanges);
  EXPECT_EQ(exchange_count(options, 9), 0);
  EXPECT_EQ(exchange_count(options, 20), 0);
  // Judged as pruned: none.
  options.recovery_steps = 0;
  EXPECT_EQ(exchange_count(options, 5), 0);
  // A count the user gives holds whatever the model.
  options.exchanges = 1;
  EXPECT_EQ(exchange_count(options, 20), 1);
  options.recovery_steps = -1;
  options.exchanges = 0;
  EXPECT_EQ(exchange_count(options, 5), 0);
}

TEST(Pipeline, AutoJudgesAlongPathsByTheErrorWhenFineTuningFollowsSeveralRounds) {
  PipelineOptions options = judged_rd();
  // One round: each plan judged at the round's own target, by the distortion on 1,024 images.
  EXPECT_EQ(judge_target(options), "round");
  EXPECT_EQ(judge_metric(options), "distortion");
  EXPECT_EQ(judge_count(options), kAutoJudgeSize);
  // Several rounds with fine-tuning: every rule's path, judged by the error on 16,384 images.
  options.rounds = 2;
  EXPECT_EQ(judge_target(options), "path");
  EXPECT_EQ(judge_metric(options), "error");
  EXPECT_EQ(judge_count(options), kAutoPathJudgeSize);
  EXPECT_EQ(options.paths, -1);
  // On the calibration images, by the distortion.
  options.judge_size = 0;
  EXPECT_EQ(judge_metric(options), "distortion");
  options.judge_size = -1;
  // What the user names stays as named.
  options.judge_by = "loss";
  EXPECT_EQ(judge_metric(options), "loss");
  options.judge_by = "auto";
  options.judge_at = "final";
  EXPECT_EQ(judge_metric(options), "distortion");
  EXPECT_EQ(judge_count(options), kAutoJudgeSize);
  options.judge_at = "auto";
  // Judged as pruned (no fine-tuning, or no recovery steps): at the final target, by the distortion
  // on the calibration images.
  options.recovery_steps = 0;
  EXPECT_EQ(judge_target(options), "final");
  EXPECT_EQ(judge_metric(options), "distortion");
  EXPECT_EQ(judge_count(options), 0);
  options.recovery_steps = -1;
  options.finetune.steps = 0;
  EXPECT_EQ(judge_target(options), "final");
  // Zero-data calibration judges along paths by the error on the judging images too.
  options.finetune.steps = 4;
  options.synthetic = true;
  EXPECT_NO_THROW(validate(options));
  EXPECT_EQ(judge_metric(options), "error");
}

// --judge-at path: round 1 follows the best rules at the final target through round 2 and takes
// the rule whose path ends lowest, with the network its round-1 fine-tuning left.
TEST(Pipeline, JudgingWholePathsTakesTheRuleWhosePathEndsLowest) {
  const TrainedToy toy;
  PipelineOptions options = judged_rd();
  options.refine = 0;
  options.rounds = 2;
  options.refine_from = {"lamp", "uniform+", "erk"};
  options.judge_at = "path";
  options.judge_by = "distortion";  // so the reference the path's end is judged against is checked
  options.paths = 2;
  EXPECT_EQ(judge_target(options), "path");
  options.out_dir = toy.out.file("path");
  auto network = load_network(toy.dense);
  const PipelineResult result = run_pipeline(network, toy.data, options);
  const RoundResult& one = result.rounds.at(0);
  EXPECT_DOUBLE_EQ(one.judged_at, 0.9);
  // The rules judged at the final target, then the two best of them followed to the end.
  std::vector<RefineStep> rules;
  std::vector<RefineStep> paths;
  for (const auto& step : one.refine) (step.path_rounds == 0 ? rules : paths).push_back(step);
  ASSERT_GE(rules.size(), 4u);
  ASSERT_EQ(paths.size(), 2u);
  const std::vector<size_t> order = lowest_first(rules);
  EXPECT_EQ(paths[0].start, rules[order[0]].start);
  EXPECT_EQ(paths[1].start, rules[order[1]].start);
  for (const auto& step : rules) EXPECT_FALSE(step.chosen);
  const RefineStep& chosen = paths[0].chosen ? paths[0] : paths[1];
  ASSERT_TRUE(chosen.chosen);
  EXPECT_EQ(paths[0].chosen + paths[1].chosen, 1);
  EXPECT_LE(chosen.measured, (paths[0].chosen ? paths[1] : paths[0]).measured);
  EXPECT_EQ(chosen.path_rounds, 2);
  EXPECT_GE(chosen.sparsity, 0.9 - 1e-9);
  EXPECT_TRUE(one.finetune_from_judgement);  // the path fine-tuned the round's plan as the round does
  // By hand: round 1's model is the chosen plan fine-tuned with round 1's seed ...
  const Dataset calibration = toy.data.train.head(32);
  const Plan plan = plan_from_json(read_file(toy.out.file("path/round-1/plan.json")), "plan");
  auto by_hand = load_network(toy.dense);
  apply_plan(*by_hand, plan, "test");
  TrainOptions tuning = options.finetune;
  tuning.progress = false;
  tuning.seed = derive_seed(options.finetune.seed, 1);
  train(*by_hand, toy.data.train, tuning);
  auto kept = load_network(toy.out.file("path/round-1/model.pt"));
  for (size_t i = 0; i < kept->parameters().size(); ++i)
    EXPECT_TRUE(torch::allclose(kept->parameters()[i], by_hand->parameters()[i], 1e-5, 1e-6));
  // ... and the path's judgement is the same rule's plan at 90% on it, recovered with round 2's
  // seed, against the dense network's outputs on the judging images.
  // The plan `rule` gives at 90% on `network`.
  const auto final_plan = [&](Network& network, const std::string& rule) {
    const auto infos = layer_census(network, {1, 28, 28});
    const BaselineOptions at_final{BudgetKind::kParams, 0.9, false};
    std::vector<RefineStart> starts;
    CurveOptions curve_options = options.curves;
    curve_options.progress = false;
    starts.push_back(
        {"rd", allocate_rd(measure_curves(network, calibration, "c", infos, curve_options), options.rd)});
    for (const auto& method : options.refine_from)
      starts.push_back({method, allocate_baseline(method, network, infos, at_final)});
    return rule_plan(rule, starts, infos, options.rd);
  };
  {
    const std::optional<Plan> last = final_plan(*kept, chosen.start);
    ASSERT_TRUE(last.has_value());
    const Dataset judge = toy.data.train.slice(32, judge_count(options));
    Recovery recovery;
    recovery.steps = 4;
    recovery.data = &toy.data.train;
    recovery.train = options.finetune;
    recovery.train.seed = derive_seed(options.finetune.seed, 2);
    recovery.judge = &judge;
    auto reference_network = load_network(toy.dense);
    const torch::Tensor reference = reference_outputs(*reference_network, judge, 256);
    EXPECT_NEAR(chosen.measured,
                recovered_distortion(*kept, calibration, *last, "kl", 256, reference, recovery), 1e-6);
  }
  EXPECT_GE(result.last().sparsity_achieved, 0.9 - 1e-9);
  const auto settings = nlohmann::json::parse(read_file(toy.out.file("path/settings.json")));
  EXPECT_EQ(settings["rd"]["judge_at"], "path");
  EXPECT_EQ(settings["rd"]["paths"], 2);
  const auto metrics = nlohmann::json::parse(read_file(toy.out.file("path/round-1/metrics.json")));
  EXPECT_EQ(metrics["refine"].back()["path_rounds"], 2);
  // A finished round comes back with its path judgements; other --paths is another run.
  network = load_network(toy.dense);
  const PipelineResult resumed = run_pipeline(network, toy.data, options);
  EXPECT_TRUE(resumed.rounds.at(0).resumed);
  EXPECT_EQ(resumed.rounds.at(0).refine.back().path_rounds, 2);
  options.paths = 3;
  network = load_network(toy.dense);
  EXPECT_THROW(run_pipeline(network, toy.data, options), UsageError);
  // By default every rule's path is followed.
  options.paths = -1;
  options.out_dir = toy.out.file("all");
  network = load_network(toy.dense);
  const RoundResult all = run_pipeline(network, toy.data, options).rounds.at(0);
  size_t followed = 0;
  for (const auto& step : all.refine) followed += step.path_rounds > 0 ? 1 : 0;
  EXPECT_EQ(followed, rules.size());
  EXPECT_EQ(nlohmann::json::parse(read_file(toy.out.file("all/settings.json")))["rd"]["paths"], "all");
  // Judged at the final target alone, settings.json does not record --paths.
  options.judge_at = "final";
  options.out_dir = toy.out.file("final");
  options.finetune.steps = 0;
  network = load_network(toy.dense);
  run_pipeline(network, toy.data, options);
  EXPECT_FALSE(nlohmann::json::parse(read_file(toy.out.file("final/settings.json")))["rd"].contains("paths"));
  // Without fine-tuning every path is followed as pruned and its end judged as pruned: the joint
  // distortion of the same rule's plan at 90% on round 1's pruned network, against the dense
  // network's outputs on the calibration images.
  options.judge_at = "path";
  options.out_dir = toy.out.file("pruned");
  network = load_network(toy.dense);
  const RoundResult pruned = run_pipeline(network, toy.data, options).rounds.at(0);
  EXPECT_FALSE(pruned.finetune_from_judgement);
  const auto pruned_chosen = std::find_if(pruned.refine.begin(), pruned.refine.end(),
                                          [](const RefineStep& step) { return step.chosen; });
  ASSERT_NE(pruned_chosen, pruned.refine.end());
  EXPECT_EQ(pruned_chosen->path_rounds, 2);
  EXPECT_EQ(pruned_chosen->recovery_steps, 0);
  EXPECT_EQ(pruned_chosen->judged_by, "distortion");
  for (const auto& step : pruned.refine) {
    if (step.path_rounds > 0) {
      EXPECT_GE(step.measured, pruned_chosen->measured) << step.start;
    }
  }
  auto round_one = load_network(toy.out.file("pruned/round-1/model.pt"));
  const std::optional<Plan> last = final_plan(*round_one, pruned_chosen->start);
  ASSERT_TRUE(last.has_value());
  auto dense = load_network(toy.dense);
  EXPECT_NEAR(pruned_chosen->measured,
              joint_distortion(*round_one, calibration, *last, "kl", 256, false,
                               reference_outputs(*dense, calibration, 256)),
              1e-6);
}

// One-shot rd at 50% on a fresh ResNet-20 (batch norm everywhere): 16 calibration images, 4
// levels, one refinement pass, batch norm re-estimated or not; writes into `out_dir`.
PipelineOptions one_shot_resnet(bool recalibrate, const std::string& out_dir) {
  PipelineOptions options;
  options.method = "rd";
  options.rd.sparsity_target = 0.5;
  options.calib_size = 16;
  options.curves.levels = 4;
  options.curves.tail = false;
  options.refine = 1;
  options.bn_recalibrate = recalibrate;
  options.eval_limit = 16;
  options.progress = false;
  options.out_dir = out_dir;
  return options;
}

// --judge-size N without recovery: every plan judged as pruned on the judging images, batch norm
// re-estimated on the calibration images first, as evaluation sees the network; the report's
// measured distortion stays the joint distortion on the calibration images, as for every method.
TEST(Pipeline, PlansJudgedAsPrunedAreMeasuredOnJudgingImagesWhenAskedFor) {
  TempDir data_dir;
  const auto data = toy_data(data_dir);
  const Dataset calibration = data.train.head(16);
  const Dataset judge = data.train.slice(16, 64);
  for (const std::string by : {"error", "distortion"}) {
    TempDir out;
    auto network = fresh_model("resnet20");
    network->save(out.file("dense.pt"));
    PipelineOptions options = one_shot_resnet(/*recalibrate=*/true, out.file("run"));
    options.refine_from = {"global", "lamp"};
    options.judge_size = 64;
    options.judge_by = by;
    EXPECT_EQ(judge_metric(options), by);
    const RoundResult round = run_pipeline(network, data, options).last();
    const auto settings = nlohmann::json::parse(read_file(out.file("run/settings.json")));
    EXPECT_EQ(settings["rd"]["judge_size"], 64);
    EXPECT_EQ(settings["rd"]["judge_by"], by);
    EXPECT_EQ(settings["rd"]["blends"], 0);
    ASSERT_GE(round.refine.size(), 3u);
    const RefineStep* chosen = nullptr;
    for (const auto& step : round.refine) {
      EXPECT_EQ(step.recovery_steps, 0);
      EXPECT_EQ(step.judged_by, by);
      if (step.chosen) chosen = &step;
    }
    ASSERT_NE(chosen, nullptr);
    for (const auto& step : round.refine) EXPECT_GE(step.measured, chosen->measured) << step.start;
    const auto plan = plan_from_json(read_file(out.file("run/round-1/plan.json")), "plan");
    // The judgement by hand: the plan applied, batch norm re-estimated, measured in evaluation mode.
    auto dense = load_network(out.file("dense.pt"));
    const torch::Tensor reference = reference_outputs(*dense, judge, 256);
    auto pruned = load_network(out.file("dense.pt"));
    apply_plan(*pruned, plan, "test");
    recalibrate_batch_norm(*pruned, calibration);
    pruned->set_training(false);
    double by_hand = 0;
    {
      torch::NoGradGuard no_grad;
      by_hand = by == "error" ? 1.0 - evaluate(*pruned, judge).top1
                              : output_distortion(network_outputs(*pruned, judge, 256), reference, "kl");
    }
    EXPECT_NEAR(chosen->measured, by_hand, 1e-6) << by;
    EXPECT_FALSE(round.finetune_from_judgement);  // nothing was fine-tuned
    // It is not what the calibration images measure.
    ASSERT_TRUE(round.measured_distortion.has_value());
    EXPECT_NEAR(*round.measured_distortion,
                joint_distortion(*dense, calibration, plan, "kl", 256, /*batch_statistics=*/true), 1e-6);
    if (by == "distortion") {
      EXPECT_GT(std::abs(*round.measured_distortion - chosen->measured), 1e-6);
    }
  }
}

TEST(Pipeline, RefinementMeasuresWithBatchStatisticsWhenBatchNormIsRecalibrated) {
  TempDir data_dir;
  const auto data = toy_data(data_dir);
  for (const bool recalibrate : {false, true}) {
    TempDir out;
    auto network = fresh_model("resnet20");
    const PipelineOptions options = one_shot_resnet(recalibrate, out.file("run"));
    run_pipeline(network, data, options);
    const auto first = curves_from_json(read_file(out.file("run/round-1/curves.json")), "c");
    const auto around = curves_from_json(read_file(out.file("run/round-1/curves-refine-1.json")), "r");
    EXPECT_FALSE(first.bn_recalibrated);
    EXPECT_EQ(around.bn_recalibrated, recalibrate);
  }
}

TEST(Pipeline, EveryBaselineMeetsTheTargetWithoutEmptyingALayer) {
  TempDir data_dir;
  const auto data = toy_data(data_dir);
  for (const std::string method : {"global", "lamp", "uniform", "uniform+", "erk"}) {
    auto network = trained_lenet(data);
    PipelineOptions options;
    options.method = method;
    options.rd.sparsity_target = 0.98;
    options.progress = false;
    options.bn_recalibrate = false;
    const PipelineResult result = run_pipeline(network, data, options);
    EXPECT_GE(result.last().sparsity_achieved, 0.98) << method;
    for (size_t i = 0; i < network->layers().size(); ++i) {
      EXPECT_GT((network->layers()[i].weight != 0).sum().item<int64_t>(), 0) << method << " " << i;
    }
  }
}

TEST(Pipeline, BadOptionsAreUsageErrors) {
  PipelineOptions options;
  options.method = "random";
  EXPECT_THROW(validate(options), UsageError);
  options.method = "rd";
  options.rounds = 0;
  EXPECT_THROW(validate(options), UsageError);
  options.rounds = 1;
  options.schedule = "cubic";
  EXPECT_THROW(validate(options), UsageError);
  TempDir dir;
  write_file_atomic(dir.file("file"), "x");
  options.schedule = "geometric";
  options.out_dir = dir.file("file");
  EXPECT_THROW(validate(options), UsageError);
  options.out_dir.clear();
  options.recovery_steps = -2;
  EXPECT_THROW(validate(options), UsageError);
  options.recovery_steps = -1;
  options.blends = 21;
  EXPECT_THROW(validate(options), UsageError);
  options.blends = -2;
  EXPECT_THROW(validate(options), UsageError);
  options.blends = -1;
  options.exchanges = 21;
  EXPECT_THROW(validate(options), UsageError);
  options.exchanges = -2;
  EXPECT_THROW(validate(options), UsageError);
  options.exchanges = -1;
  options.judge_size = -2;
  EXPECT_THROW(validate(options), UsageError);
  options.judge_size = 1000001;
  EXPECT_THROW(validate(options), UsageError);
  options.judge_size = 0;
  EXPECT_NO_THROW(validate(options));
  options.judge_by = "accuracy";
  EXPECT_THROW(validate(options), UsageError);
  options.judge_by = "loss";
  EXPECT_NO_THROW(validate(options));
  // Judged against labels after recovery, zero-data calibration needs judging images that have them.
  options.finetune.steps = 10;
  options.synthetic = true;
  for (const char* by : {"loss", "error"}) {
    options.judge_by = by;
    EXPECT_THROW(validate(options), UsageError) << by;
    options.judge_size = 16;
    EXPECT_NO_THROW(validate(options)) << by;
    options.judge_size = 0;
  }
  options.synthetic = false;
  options.finetune.steps = 0;
  options.judge_at = "later";
  EXPECT_THROW(validate(options), UsageError);
  options.judge_at = "final";
  EXPECT_NO_THROW(validate(options));
  options.paths = 0;
  EXPECT_THROW(validate(options), UsageError);
  options.paths = 101;
  EXPECT_THROW(validate(options), UsageError);
  options.paths = -2;
  EXPECT_THROW(validate(options), UsageError);
  options.paths = -1;
  EXPECT_NO_THROW(validate(options));
  options.holdout = -1;
  EXPECT_THROW(validate(options), UsageError);
  options.holdout = 0;
  // The loss needs labels: the synthetic calibration images have none.
  options.synthetic = true;
  options.finetune.steps = 10;
  options.judge_size = 0;
  EXPECT_THROW(validate(options), UsageError);
  options.judge_size = 64;
  EXPECT_NO_THROW(validate(options));
}

TEST(Additivity, RdPlansAndRandomAllocationsAreMeasured) {
  TempDir data_dir;
  const auto data = toy_data(data_dir);
  auto network = trained_lenet(data);
  const Dataset calibration = data.train.head(32);
  CurveOptions curve_options;
  curve_options.levels = 20;
  curve_options.progress = false;
  const CurveSet curves =
      measure_curves(*network, calibration, "toy", layer_census(*network, {1, 28, 28}), curve_options);
  const auto before = network->layers()[0].weight.clone();
  const auto points = additivity_study(*network, calibration, curves, {0.5, 0.9}, 5, 1, 64);
  ASSERT_EQ(points.size(), 7u);
  EXPECT_EQ(points[0].kind, "rd");
  EXPECT_EQ(points[6].kind, "random");
  for (const auto& p : points) {
    EXPECT_GE(p.measured, 0);
    EXPECT_GE(p.predicted, 0);
  }
  EXPECT_TRUE(torch::equal(before, network->layers()[0].weight));  // restored
  // One layer alone: the joint distortion is that layer's curve value exactly.
  Plan single;
  for (const auto& layer : curves.layers)
    single.layers.push_back({layer.name, layer.weights, layer.weights, 0});
  single.layers[1].kept = curves.layers[1].kept[10];
  EXPECT_NEAR(joint_distortion(*network, calibration, single, curves.metric, 64),
              curves.layers[1].distortion[10], 1e-9 + 1e-6 * curves.layers[1].distortion[10]);
}

}  // namespace
}  // namespace rdprune
