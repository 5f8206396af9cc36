#include <filesystem>
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "fresh_network.h"
#include "rdprune/additivity.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/magnitude_baselines.h"
#include "rdprune/masks.h"
#include "rdprune/pipeline.h"
#include "rdprune/run_record.h"
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

std::unique_ptr<Network> trained_lenet(const DatasetSplits& data) {
  auto network = testing::fresh_network("lenet5");
  TrainOptions options;
  options.steps = 40;
  options.batch_size = 32;
  options.lr = 0.05;
  train(*network, data.train, options);
  return network;
}

TEST(Pipeline, RoundTargetsReachTheFinalSparsity) {
  EXPECT_DOUBLE_EQ(round_target("geometric", 0.9, 3, 3), 0.9);
  EXPECT_NEAR(round_target("geometric", 0.9, 1, 2), 1 - std::sqrt(0.1), 1e-12);
  EXPECT_NEAR(round_target("linear", 0.9, 1, 3), 0.3, 1e-12);
}

// A LeNet-5 trained on the toy split, saved as `dense` in `out`.
struct TrainedToy {
  TempDir data_dir;
  DatasetSplits data = toy_data(data_dir);
  TempDir out;
  std::string dense = out.file("dense.pt");
  TrainedToy() { trained_lenet(data)->save(dense); }
};

// `method` at 90% on the toy split: 32 calibration images, 10 levels.
PipelineOptions toy_options(const std::string& method, const std::string& out_dir) {
  PipelineOptions options;
  options.method = method;
  options.rd.sparsity_target = 0.9;
  options.calib_size = 32;
  options.allocator.curves.levels = 10;
  options.finetune.batch_size = 32;
  options.out_dir = out_dir;
  return options;
}

std::vector<int64_t> kept_of(const std::string& plan_file) {
  std::vector<int64_t> kept;
  for (const auto& layer : plan_from_json(read_file(plan_file), plan_file).layers) kept.push_back(layer.kept);
  return kept;
}

TEST(Pipeline, IterativeRdGrowsMasksFineTunesAndResumes) {
  const TrainedToy toy;
  auto network = load_network(toy.dense);
  PipelineOptions options = toy_options("rd", toy.out.file("run"));
  options.rounds = 2;
  options.allocator.curves.levels = 20;
  options.finetune.steps = 10;
  options.finetune.lr = 0.01;
  const PipelineResult result = run_pipeline(network, toy.data, options);
  ASSERT_EQ(result.rounds.size(), 2u);
  EXPECT_GE(result.rounds[0].sparsity_achieved, round_target("geometric", 0.9, 1, 2));
  EXPECT_GE(result.last().sparsity_achieved, 0.9);
  for (const char* file : {"curves.json", "plan.json", "model.pt", "metrics.json"}) {
    EXPECT_TRUE(std::filesystem::exists(toy.out.file(std::string("run/round-2/") + file))) << file;
  }
  // Masks only grow: every layer of round 2 is at least as sparse as in round 1.
  const auto kept1 = kept_of(toy.out.file("run/round-1/plan.json"));
  const auto kept2 = kept_of(toy.out.file("run/round-2/plan.json"));
  for (size_t i = 0; i < kept1.size(); ++i) EXPECT_LE(kept2[i], kept1[i]);
  // Masked weights are zero in the saved model.
  auto saved = load_network(toy.out.file("run/round-2/model.pt"));
  for (size_t i = 0; i < saved->layers().size(); ++i)
    EXPECT_EQ((saved->layers()[i].weight != 0).sum().item<int64_t>(), kept2[i]);
  // What each round cost: rd fine-tunes and never trains to judge.
  for (const auto& round : result.rounds) {
    EXPECT_EQ(round.cost.train_steps, 10);
    EXPECT_EQ(round.cost.judge_train_steps, 0);
    EXPECT_GT(round.cost.forward_samples, 0);
    EXPECT_GT(round.cost.seconds, 0);
    for (const auto& step : round.steps) EXPECT_EQ(step.start, "rd");
  }
  // A rerun resumes from the finished rounds and reports the same figures.
  auto again = load_network(toy.dense);
  const PipelineResult resumed = run_pipeline(again, toy.data, options);
  EXPECT_TRUE(resumed.rounds[0].resumed);
  EXPECT_TRUE(resumed.rounds[1].resumed);
  EXPECT_DOUBLE_EQ(resumed.last().finetuned.top1, result.last().finetuned.top1);
  EXPECT_EQ(resumed.last().measured_distortion, result.last().measured_distortion);
  EXPECT_EQ(resumed.last().cost.train_steps, result.last().cost.train_steps);
  ASSERT_EQ(resumed.last().steps.size(), result.last().steps.size());
  for (size_t i = 0; i < result.last().steps.size(); ++i) {
    EXPECT_DOUBLE_EQ(resumed.last().steps[i].measured, result.last().steps[i].measured);
    EXPECT_EQ(resumed.last().steps[i].chosen, result.last().steps[i].chosen);
  }
  // A run with other settings does not take over the directory's rounds, and is told which.
  auto other = load_network(toy.dense);
  options.finetune.steps = 11;
  try {
    run_pipeline(other, toy.data, options);
    ADD_FAILURE() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_EQ(e.option(), "out_dir");
    EXPECT_NE(std::string(e.what()).find("other settings (finetune.steps)"), std::string::npos) << e.what();
  }
  // Nor do rounds whose settings are not on record.
  std::filesystem::remove(toy.out.file("run/settings.json"));
  options.finetune.steps = 10;
  EXPECT_THROW(run_pipeline(other, toy.data, options), UsageError);
}

// rd is the rate-distortion allocator alone: its plan is the DP's on its own curves (refined on the
// joint distortion around its own plan), whatever select's options or the baselines would give.
TEST(Pipeline, RdsPlanDoesNotDependOnTheOtherAllocators) {
  const TrainedToy toy;
  PipelineOptions paper = toy_options("rd", toy.out.file("paper"));
  paper.allocator = preset_settings("paper");
  paper.allocator.curves.levels = 10;
  auto network = load_network(toy.dense);
  const RoundResult round = run_pipeline(network, toy.data, paper).last();
  EXPECT_TRUE(round.steps.empty());  // the paper: no refinement
  // The DP on the curves measured by hand.
  auto by_hand = load_network(toy.dense);
  const auto infos = layer_census(*by_hand, {1, 28, 28});
  const CurveSet curves =
      measure_curves(*by_hand, toy.data.train.head(32), "toy", infos, paper.allocator.curves);
  RdOptions rd = paper.rd;
  std::vector<int64_t> expected;
  for (const auto& layer : allocate_rd(curves, rd).layers) expected.push_back(layer.kept);
  EXPECT_EQ(kept_of(toy.out.file("paper/round-1/plan.json")), expected);
  // The default rd, with select's options and the baselines' constraints as different as they go.
  std::vector<std::vector<int64_t>> plans;
  for (int variant = 0; variant < 2; ++variant) {
    PipelineOptions options = toy_options("rd", toy.out.file("rd" + std::to_string(variant)));
    if (variant == 1) {
      options.allocator.select.pool = {"lamp"};
      options.allocator.select.recovery_steps = 7;
      options.allocator.select.judge_by = "error";
      options.allocator.select.judge_size = 64;
      options.allocator.select.exchanges = 3;
    }
    auto net = load_network(toy.dense);
    const RoundResult r = run_pipeline(net, toy.data, options).last();
    ASSERT_FALSE(r.steps.empty());
    for (const auto& step : r.steps) {
      EXPECT_EQ(step.start, "rd");  // no other allocator's plan is ever judged
      EXPECT_EQ(step.recovery_steps, 0);
      EXPECT_EQ(step.judged_by, "distortion");
    }
    EXPECT_EQ(r.cost.train_steps, 0);
    plans.push_back(kept_of(options.out_dir + "/round-1/plan.json"));
  }
  EXPECT_EQ(plans[0], plans[1]);
  // Its plan is no baseline's (they would only match by chance on this toy).
  for (const std::string method : {"global", "lamp", "erk"}) {
    auto net = load_network(toy.dense);
    run_pipeline(net, toy.data, toy_options(method, toy.out.file(method)));
    EXPECT_NE(kept_of(toy.out.file(method + "/round-1/plan.json")), plans[0]) << method;
  }
}

TEST(Pipeline, SelectStartsFromThePoolsPlansAndKeepsTheLowest) {
  const TrainedToy toy;
  PipelineOptions options = toy_options("select", toy.out.file("select"));
  options.allocator.refine = 1;
  options.allocator.select.pool = {"rd", "lamp", "erk"};
  auto network = load_network(toy.dense);
  const RoundResult round = run_pipeline(network, toy.data, options).last();
  ASSERT_GE(round.steps.size(), 3u);
  EXPECT_EQ(round.steps[0].start, "rd");
  EXPECT_EQ(round.steps[1].start, "lamp");
  EXPECT_EQ(round.steps[2].start, "erk");
  double best_start = round.steps[0].measured;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(round.steps[i].pass, 0);
    best_start = std::min(best_start, round.steps[i].measured);
  }
  int chosen = 0;
  for (const auto& step : round.steps) chosen += step.chosen ? 1 : 0;
  ASSERT_EQ(chosen, 1);
  const auto it =
      std::find_if(round.steps.begin(), round.steps.end(), [](const RefineStep& s) { return s.chosen; });
  EXPECT_LE(it->measured, best_start);
  // Judged as pruned on the calibration images: what the report measures for every method.
  ASSERT_TRUE(round.measured_distortion.has_value());
  EXPECT_NEAR(*round.measured_distortion, it->measured, 1e-9);
  // The pool's own plans: lamp's start is the lamp run's plan.
  auto lamp = load_network(toy.dense);
  run_pipeline(lamp, toy.data, toy_options("lamp", toy.out.file("lamp")));
  const RdOptions budget = options.rd;
  EXPECT_EQ(round.steps[1].sparsity,
            plan_from_json(read_file(toy.out.file("lamp/round-1/plan.json")), "p").sparsity_achieved());
  (void)budget;
}

TEST(Pipeline, SelectJudgedAfterRecoveryCountsItsStepsAndKeepsTheFineTunedNetwork) {
  const TrainedToy toy;
  PipelineOptions options = toy_options("select", toy.out.file("select"));
  options.allocator.refine = 0;
  options.allocator.select.pool = {"rd", "lamp"};
  options.allocator.select.recovery_steps = 4;
  options.allocator.select.judge_by = "error";
  options.allocator.select.judge_size = 64;
  options.finetune.steps = 4;
  auto network = load_network(toy.dense);
  const RoundResult round = run_pipeline(network, toy.data, options).last();
  ASSERT_EQ(round.steps.size(), 2u);
  for (const auto& step : round.steps) {
    EXPECT_EQ(step.recovery_steps, 4);
    EXPECT_EQ(step.judged_by, "error");
    EXPECT_GE(step.measured, 0);
    EXPECT_LE(step.measured, 1);
  }
  // Two plans judged after 4 steps each; the chosen one's recovery was the round's fine-tuning.
  EXPECT_EQ(round.cost.judge_train_steps, 8);
  EXPECT_EQ(round.cost.train_steps, 8);
  EXPECT_TRUE(round.finetune_from_judgement);
  // Labels need judging images: the calibration set alone is refused.
  options.allocator.select.judge_size = 0;
  EXPECT_THROW(validate(options), UsageError);
}

// Each preset expands to explicit values that settings.json records; a rerun with any of them
// changed is refused, naming it.
TEST(Pipeline, SettingsRecordEveryResolvedValueAndARerunNamesWhatDiffers) {
  const TrainedToy toy;
  for (const std::string preset : {"default", "paper"}) {
    PipelineOptions options = toy_options("select", toy.out.file(preset));
    options.preset = preset;
    options.allocator = preset_settings(preset);
    options.allocator.curves.levels = 10;
    options.allocator.refine = 0;
    auto network = load_network(toy.dense);
    run_pipeline(network, toy.data, options);
    const auto settings = nlohmann::json::parse(read_file(toy.out.file(preset + "/settings.json")));
    EXPECT_EQ(settings.at("schema"), kSettingsSchema);
    const auto& a = settings.at("allocator");
    EXPECT_EQ(a.at("preset"), preset);
    EXPECT_EQ(a.at("metric"), preset == "paper" ? "mse" : "kl");
    EXPECT_EQ(a.at("tail"), preset != "paper");
    EXPECT_EQ(a.at("levels"), 10);
    EXPECT_EQ(a.at("refine"), 0);
    EXPECT_EQ(a.at("bn_aware"), false);
    EXPECT_EQ(a.at("estimator"), "measured");
    EXPECT_EQ(a.at("solver"), "dp");
    for (const char* key : {"pool", "recovery_steps", "judge_by", "judge_size", "exchanges"})
      EXPECT_TRUE(a.at("select").contains(key)) << key;
    for (const char* key : {"method", "sparsity", "budget", "rounds", "schedule", "calib_size", "seed",
                            "bn_recalibrate", "eval_limit", "finetune", "model", "data", "threads"})
      EXPECT_TRUE(settings.contains(key)) << key;
    // The same run resumes; one resolved value changed is named.
    auto again = load_network(toy.dense);
    EXPECT_NO_THROW(run_pipeline(again, toy.data, options));
    options.allocator.curves.metric = preset == "paper" ? "kl" : "mse";
    auto third = load_network(toy.dense);
    try {
      run_pipeline(third, toy.data, options);
      ADD_FAILURE() << "expected a UsageError";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("(allocator.metric)"), std::string::npos) << e.what();
    }
  }
}

// Run directories of the first version (settings without a schema): a baseline's resumes, an rd
// run, which was today's select, is refused with the reason.
TEST(Pipeline, FirstVersionRunDirectoriesResumeOrAreRefusedWithTheReason) {
  const TrainedToy toy;
  PipelineOptions options = toy_options("global", toy.out.file("global"));
  auto network = load_network(toy.dense);
  const RoundResult first = run_pipeline(network, toy.data, options).last();
  auto settings = nlohmann::json::parse(read_file(toy.out.file("global/settings.json")));
  settings.erase("schema");
  write_file_atomic(toy.out.file("global/settings.json"), settings.dump());
  auto metrics = nlohmann::json::parse(read_file(toy.out.file("global/round-1/metrics.json")));
  metrics.erase("cost");
  metrics["curve_seconds"] = 1.5;
  metrics["refine"] = metrics["steps"];
  metrics.erase("steps");
  write_file_atomic(toy.out.file("global/round-1/metrics.json"), metrics.dump());
  auto again = load_network(toy.dense);
  const RoundResult resumed = run_pipeline(again, toy.data, options).last();
  EXPECT_TRUE(resumed.resumed);
  EXPECT_DOUBLE_EQ(resumed.finetuned.top1, first.finetuned.top1);
  EXPECT_DOUBLE_EQ(resumed.cost.allocation_seconds, 1.5);
  settings["method"] = "rd";
  write_file_atomic(toy.out.file("global/settings.json"), settings.dump());
  options.method = "rd";
  try {
    run_pipeline(again, toy.data, options);
    ADD_FAILURE() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("now select"), std::string::npos) << e.what();
  }
}

TEST(Pipeline, ExtraFineTuningStepsAreAddedToTheirRound) {
  const TrainedToy toy;
  PipelineOptions options = toy_options("global", toy.out.file("extra"));
  options.rounds = 2;
  options.finetune.steps = 3;
  options.extra_finetune_steps = {5, 0};
  auto network = load_network(toy.dense);
  const PipelineResult result = run_pipeline(network, toy.data, options);
  EXPECT_EQ(result.rounds[0].cost.train_steps, 8);
  EXPECT_EQ(result.rounds[1].cost.train_steps, 3);
  options.extra_finetune_steps = {-1};
  EXPECT_THROW(validate(options), UsageError);
}

TEST(Pipeline, EveryBaselineMeetsTheTargetWithoutEmptyingALayer) {
  TempDir data_dir;
  const auto data = toy_data(data_dir);
  for (const std::string method : {"global", "lamp", "uniform", "uniform+", "erk"}) {
    auto network = trained_lenet(data);
    PipelineOptions options;
    options.method = method;
    options.rd.sparsity_target = 0.98;
    options.bn_recalibrate = false;
    const PipelineResult result = run_pipeline(network, data, options);
    EXPECT_GE(result.last().sparsity_achieved, 0.98) << method;
    for (size_t i = 0; i < network->layers().size(); ++i) {
      EXPECT_GT((network->layers()[i].weight != 0).sum().item<int64_t>(), 0) << method << " " << i;
    }
  }
}

TEST(Pipeline, BadOptionsAreUsageErrors) {
  const auto option_of = [](const PipelineOptions& options) {
    try {
      validate(options);
    } catch (const UsageError& e) {
      return e.option();
    }
    return std::string("(none)");
  };
  PipelineOptions options;
  options.method = "random";
  EXPECT_EQ(option_of(options), "method");
  options.method = "select";
  options.rounds = 0;
  EXPECT_EQ(option_of(options), "rounds");
  options.rounds = 1;
  options.schedule = "cubic";
  EXPECT_EQ(option_of(options), "schedule");
  TempDir dir;
  write_file_atomic(dir.file("file"), "x");
  options.schedule = "geometric";
  options.out_dir = dir.file("file");
  EXPECT_EQ(option_of(options), "out_dir");
  options.out_dir.clear();
  options.allocator.refine = 21;
  EXPECT_EQ(option_of(options), "refine");
  options.allocator.refine = 2;
  options.allocator.select.pool = {"rd", "select"};
  EXPECT_EQ(option_of(options), "pool");
  options.allocator.select.pool = {"rd", "rd"};
  EXPECT_EQ(option_of(options), "pool");
  options.allocator.select.pool = {};
  EXPECT_EQ(option_of(options), "pool");
  options.allocator.select.pool = {"rd", "lamp"};
  options.allocator.select.recovery_steps = -1;
  EXPECT_EQ(option_of(options), "recovery_steps");
  options.allocator.select.recovery_steps = 0;
  options.allocator.select.exchanges = 21;
  EXPECT_EQ(option_of(options), "exchanges");
  options.allocator.select.exchanges = 0;
  options.allocator.select.judge_size = -1;
  EXPECT_EQ(option_of(options), "judge_size");
  options.allocator.select.judge_size = 0;
  options.allocator.select.judge_by = "accuracy";
  EXPECT_EQ(option_of(options), "judge_by");
  options.allocator.select.judge_by = "loss";
  EXPECT_EQ(option_of(options), "judge_by");  // labels need judging images
  options.allocator.select.judge_size = 64;
  EXPECT_EQ(option_of(options), "(none)");
  options.holdout = -1;
  EXPECT_EQ(option_of(options), "holdout");
  options.holdout = 0;
  options.preset = "paper";
  EXPECT_THROW(preset_settings("xu"), UsageError);
  EXPECT_EQ(option_of(options), "(none)");
  // Channel plans: their own methods, no weight criterion, a granularity that exists.
  options.allocator.granularity = "channel";
  EXPECT_EQ(option_of(options), "method");  // select makes no channel plans
  options.method = "slimming";
  EXPECT_EQ(option_of(options), "(none)");
  options.rd.min_sparsity = 0.1;  // the channel rules choose every width themselves
  EXPECT_EQ(option_of(options), "min_sparsity");
  options.rd.min_sparsity = 0;
  options.allocator.criterion = "wanda";
  EXPECT_EQ(option_of(options), "criterion");
  options.allocator.criterion = "magnitude";
  options.allocator.granularity = "neuron";
  options.method = "rd";
  EXPECT_EQ(option_of(options), "granularity");
}

// The prunable layers' weights and FLOPs per sample of a LeNet-5 at its present widths.
std::pair<double, double> lenet_costs(Network& network) {
  double weights = 0;
  double flops = 0;
  for (const auto& layer : layer_census(network, {1, 28, 28})) {
    weights += static_cast<double>(layer.weights);
    flops += static_cast<double>(layer.weights) * layer.flops_per_weight;
  }
  return {weights, flops};
}

// Channel rounds shrink the network: each round's target and sparsity are fractions of the run's
// model, each round's model is physically smaller, and a rerun resumes from the smaller models.
TEST(Pipeline, ChannelRoundsWriteSmallerModelsAndResume) {
  const TrainedToy toy;
  for (const std::string method : {"rd", "uniform", "global"}) {
    auto network = load_network(toy.dense);
    const auto [dense_weights, dense_flops] = lenet_costs(*network);
    PipelineOptions options = toy_options(method, toy.out.file("channel-" + method));
    options.allocator.granularity = "channel";
    options.rd.budget = BudgetKind::kFlops;
    options.rd.sparsity_target = 0.6;
    options.rounds = 2;
    options.finetune.steps = 3;
    const PipelineResult result = run_pipeline(network, toy.data, options);
    ASSERT_EQ(result.rounds.size(), 2u);
    EXPECT_GE(result.rounds[0].flops_sparsity_achieved, round_target("geometric", 0.6, 1, 2) - 1e-9)
        << method;
    EXPECT_GE(result.last().flops_sparsity_achieved, 0.6 - 1e-9) << method;
    // The network the run leaves is the smaller one, and its costs are what the rounds report.
    const auto [weights, flops] = lenet_costs(*network);
    EXPECT_FALSE(network->meta().widths.empty()) << method;
    EXPECT_NEAR(flops / dense_flops, 1 - result.last().flops_sparsity_achieved, 1e-9) << method;
    EXPECT_NEAR(weights / dense_weights, 1 - result.last().sparsity_achieved, 1e-9) << method;
    const std::string dir = options.out_dir + "/round-";
    auto saved = load_network(dir + "2/model.pt");
    EXPECT_EQ(saved->meta().widths, network->meta().widths) << method;
    EXPECT_EQ(lenet_costs(*saved).second, flops) << method;
    // Round 2 prunes the network round 1 left: its groups are round 1's kept channels, and its
    // target the rest of the run's, as a fraction of that smaller network.
    const Plan first = plan_from_json(read_file(dir + "1/plan.json"), "round 1");
    const Plan second = plan_from_json(read_file(dir + "2/plan.json"), "round 2");
    EXPECT_EQ(second.granularity, "channel");
    for (size_t g = 0; g < first.layers.size(); ++g)
      EXPECT_EQ(second.layers[g].weights, first.layers[g].kept);
    EXPECT_LT(second.sparsity_target, 0.6) << method;
    EXPECT_EQ(std::filesystem::exists(dir + "1/curves.json"), method == "rd") << method;
    for (const auto& round : result.rounds) {
      EXPECT_EQ(round.cost.train_steps, 3) << method;  // counted across the swap to the smaller network
      EXPECT_GT(round.cost.forward_samples, 0) << method;
    }
    // A rerun takes the finished rounds and their smaller model.
    auto again = load_network(toy.dense);
    const PipelineResult resumed = run_pipeline(again, toy.data, options);
    EXPECT_TRUE(resumed.last().resumed) << method;
    EXPECT_DOUBLE_EQ(resumed.last().finetuned.top1, result.last().finetuned.top1) << method;
    EXPECT_EQ(again->meta().widths, network->meta().widths) << method;
  }
}

TEST(Additivity, RdPlansAndRandomAllocationsAreMeasured) {
  TempDir data_dir;
  const auto data = toy_data(data_dir);
  auto network = trained_lenet(data);
  const Dataset calibration = data.train.head(32);
  CurveOptions curve_options;
  curve_options.levels = 20;
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
