#include "rdprune/pipeline.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "rdprune/additivity.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/hits.h"
#include "rdprune/magnitude_baselines.h"
#include "rdprune/masks.h"
#include "rdprune/refine.h"
#include "rdprune/sample_order.h"
#include "rdprune/text.h"

namespace rdprune {
namespace fs = std::filesystem;

namespace {

bool is_baseline(const std::string& method) {
  const auto& baselines = baseline_methods();
  return std::find(baselines.begin(), baselines.end(), method) != baselines.end();
}

std::string baseline_names() {
  std::string names;
  for (const auto& method : baseline_methods()) names += (names.empty() ? "" : ", ") + method;
  return names;
}

}  // namespace

void validate(const PipelineOptions& options) {
  if (options.method != "rd" && !is_baseline(options.method)) {
    throw UsageError("--method: unknown method '" + options.method + "' (known: rd, " + baseline_names() +
                     ")");
  }
  validate(options.rd);
  if (options.rounds < 1 || options.rounds > 100) throw UsageError("--rounds: expected a count in [1, 100]");
  if (options.schedule != "geometric" && options.schedule != "linear") {
    throw UsageError("--schedule: expected geometric or linear, got '" + options.schedule + "'");
  }
  validate(options.curves);  // also where no curves are measured: a bad value is an error either way
  if (options.refine < 0 || options.refine > 20) throw UsageError("--refine: expected a count in [0, 20]");
  for (const auto& method : options.refine_from) {
    if (!is_baseline(method))
      throw UsageError("--refine-from: unknown method '" + method + "' (known: " + baseline_names() + ")");
  }
  require_distinct(options.refine_from, "--refine-from");
  if (options.recovery_steps < -1 || options.recovery_steps > 100000)
    throw UsageError("--recovery-steps: expected a count in [0, 100000] or auto");
  if (options.exchanges < -1 || options.exchanges > 20)
    throw UsageError("--exchanges: expected a count in [0, 20] or auto");
  if (options.blends < -1 || options.blends > 20)
    throw UsageError("--blends: expected a count in [0, 20] or auto");
  if (options.judge_size < -1 || options.judge_size > 1000000)
    throw UsageError("--judge-size: expected a count in [0, 1000000] or auto");
  if (options.judge_at != "auto" && options.judge_at != "round" && options.judge_at != "final" &&
      options.judge_at != "path")
    throw UsageError("--judge-at: expected round, final, path or auto, got '" + options.judge_at + "'");
  if (options.paths != -1 && (options.paths < 1 || options.paths > 100))
    throw UsageError("--paths: expected a count in [1, 100] or all");
  if (options.judge_by != "auto" && options.judge_by != "distortion" && !judged_by_labels(options.judge_by))
    throw UsageError("--judge-by: expected distortion, loss, error or auto, got '" + options.judge_by + "'");
  if (options.synthetic && judged_by_labels(judge_metric(options)) && judge_count(options) == 0) {
    throw UsageError("--judge-by " + judge_metric(options) +
                     ": the synthetic calibration images have no labels; give --judge-size N > 0");
  }
  if (options.calib_size <= 0) throw UsageError("--calib-size: expected a positive count");
  if (options.holdout < 0 || options.holdout > 10000000)
    throw UsageError("--holdout: expected a count in [0, 10000000]");
  if (options.finetune.steps > 0) {
    validate(options.finetune, "--finetune-lr");
  } else {
    validate_optimizer(options.finetune, "--finetune-lr");  // unused, but a bad value is an error
  }
  if (options.finetune.steps < 0) throw UsageError("--finetune-steps: expected a count >= 0");
  if (options.eval_limit < 0) throw UsageError("--eval-limit: expected a count >= 0");
  if (!options.out_dir.empty() && fs::exists(options.out_dir) && !fs::is_directory(options.out_dir)) {
    throw UsageError("--out-dir: " + options.out_dir + " exists and is not a directory");
  }
}

int64_t recovery_steps(const PipelineOptions& options) {
  if (options.recovery_steps >= 0) return options.recovery_steps;
  return std::min(options.finetune.steps, kAutoRecoverySteps);
}

int64_t blend_count(const PipelineOptions& options) {
  if (options.blends >= 0) return options.blends;
  return recovery_steps(options) > 0 ? kAutoBlends : 0;
}

int64_t exchange_count(const PipelineOptions& options, size_t layers) {
  if (options.exchanges >= 0) return options.exchanges;
  const auto moves = static_cast<int64_t>(layers) * (static_cast<int64_t>(layers) - 1);
  return recovery_steps(options) > 0 && moves <= kAutoExchangeMoves ? kAutoExchanges : 0;
}

std::string judge_target(const PipelineOptions& options) {
  // One round, or rd's own plan the only rule: nothing to judge ahead.
  if (options.rounds == 1 || options.refine_from.empty()) return "round";
  if (options.judge_at != "auto") return options.judge_at;
  return recovery_steps(options) > 0 ? kAutoJudgeAt : kAutoPrunedJudgeAt;
}

int64_t judge_count(const PipelineOptions& options) {
  if (options.judge_size >= 0) return options.judge_size;
  // Judged as pruned, plans measured on the calibration images chose as well as or better than on
  // more images (docs/results.md, "Judging pruned plans on more images").
  if (recovery_steps(options) == 0) return 0;
  return judge_target(options) == "path" ? kAutoPathJudgeSize : kAutoJudgeSize;
}

std::string judge_metric(const PipelineOptions& options) {
  // Plans judged as pruned on the calibration set: their joint distortion there.
  if (recovery_steps(options) == 0 && judge_count(options) == 0) return "distortion";
  if (options.judge_by != "auto") return options.judge_by;
  if (recovery_steps(options) == 0) return kAutoPrunedJudgeBy;
  // Along paths, the error on many judging images told apart paths that ended a point apart where
  // the distortion did not (docs/results.md); with --judge-size 0, the distortion as elsewhere.
  if (judge_target(options) == "path" && judge_count(options) > 0) return kAutoPathJudgeBy;
  return kAutoJudgeBy;
}

double round_target(const std::string& schedule, double final_target, int64_t r, int64_t rounds) {
  if (r >= rounds) return final_target;
  const double fraction = static_cast<double>(r) / static_cast<double>(rounds);
  if (schedule == "linear") return final_target * fraction;
  // Geometric: each round prunes the same fraction a of what is left; (1 - a)^R = 1 - S.
  return 1.0 - std::pow(1.0 - final_target, fraction);
}

namespace {

nlohmann::json eval_json(const EvalResult& eval) {
  return {{"top1", eval.top1}, {"top5", eval.top5}, {"loss", eval.loss}, {"samples", eval.samples}};
}

EvalResult eval_from_json(const nlohmann::json& json) {
  EvalResult eval;
  eval.top1 = json.at("top1").get<double>();
  eval.top5 = json.at("top5").get<double>();
  // A loss that was not finite is written as null (JSON has no NaN).
  eval.loss = json.at("loss").is_null() ? std::nan("") : json["loss"].get<double>();
  eval.samples = json.at("samples").get<int64_t>();
  return eval;
}

nlohmann::json round_json(const RoundResult& round) {
  nlohmann::json json = {{"round", round.round},
                         {"sparsity_target", round.sparsity_target},
                         {"sparsity_achieved", round.sparsity_achieved},
                         {"flops_sparsity_achieved", round.flops_sparsity_achieved},
                         {"pruned", eval_json(round.pruned)},
                         {"finetuned", eval_json(round.finetuned)},
                         {"curve_seconds", round.curve_seconds},
                         {"finetune_from_judgement", round.finetune_from_judgement}};
  json["judged_at"] = round.refine.empty() ? nlohmann::json() : nlohmann::json(round.judged_at);
  json["predicted_distortion"] =
      round.predicted_distortion ? nlohmann::json(*round.predicted_distortion) : nlohmann::json();
  json["measured_distortion"] =
      round.measured_distortion ? nlohmann::json(*round.measured_distortion) : nlohmann::json();
  nlohmann::json refine = nlohmann::json::array();
  for (const auto& step : round.refine) {
    refine.push_back({{"start", step.start},
                      {"pass", step.pass},
                      {"trust", step.trust},
                      {"exchanged", step.exchanged},
                      {"measured", step.measured},
                      {"recovery_steps", step.recovery_steps},
                      {"judged_by", step.judged_by},
                      {"sparsity", step.sparsity},
                      {"path_rounds", step.path_rounds},
                      {"chosen", step.chosen}});
  }
  json["refine"] = refine;
  return json;
}

RoundResult round_from_json(const nlohmann::json& json) {
  RoundResult round;
  round.round = json.at("round").get<int64_t>();
  round.sparsity_target = json.at("sparsity_target").get<double>();
  round.sparsity_achieved = json.at("sparsity_achieved").get<double>();
  round.flops_sparsity_achieved = json.at("flops_sparsity_achieved").get<double>();
  if (json.at("predicted_distortion").is_number())
    round.predicted_distortion = json["predicted_distortion"].get<double>();
  if (json.contains("measured_distortion") && json["measured_distortion"].is_number())
    round.measured_distortion = json["measured_distortion"].get<double>();
  for (const auto& entry : json.value("refine", nlohmann::json::array())) {
    RefineStep step;
    step.start = entry.at("start").get<std::string>();
    step.pass = entry.at("pass").get<int64_t>();
    step.trust = entry.value("trust", 0.0);
    step.exchanged = entry.value("exchanged", 0.0);
    step.measured = entry.at("measured").get<double>();
    step.recovery_steps = entry.value("recovery_steps", int64_t{0});
    step.judged_by = entry.value("judged_by", std::string("distortion"));
    step.sparsity = entry.at("sparsity").get<double>();
    step.path_rounds = entry.value("path_rounds", int64_t{0});
    step.chosen = entry.at("chosen").get<bool>();
    round.refine.push_back(step);
  }
  round.pruned = eval_from_json(json.at("pruned"));
  round.finetuned = eval_from_json(json.at("finetuned"));
  round.curve_seconds = json.value("curve_seconds", 0.0);
  round.finetune_from_judgement = json.value("finetune_from_judgement", false);
  if (json.contains("judged_at") && json["judged_at"].is_number())
    round.judged_at = json["judged_at"].get<double>();
  round.resumed = true;
  return round;
}

// What decides a run's results (not how fast it goes). A directory's finished rounds are resumed
// only by a run with the same settings.
nlohmann::json settings_json(const PipelineOptions& o, size_t layers) {
  const TrainOptions& f = o.finetune;
  nlohmann::json json = {{"method", o.method},
                         {"sparsity", o.rd.sparsity_target},
                         {"budget", to_string(o.rd.budget)},
                         {"rounds", o.rounds},
                         {"schedule", o.schedule},
                         {"allow_empty", o.rd.allow_empty},
                         {"calib_size", o.calib_size},
                         {"synthetic", o.synthetic},
                         {"seed", o.seed},
                         {"bn_recalibrate", o.bn_recalibrate},
                         {"eval_limit", o.eval_limit},
                         {"finetune",
                          {{"steps", f.steps},
                           {"batch_size", f.batch_size},
                           {"optimizer", f.optimizer},
                           {"lr", f.lr},
                           {"momentum", f.momentum},
                           {"weight_decay", f.weight_decay},
                           {"schedule", f.schedule},
                           {"warmup_fraction", f.warmup_fraction},
                           {"pad", f.augmentation.pad},
                           {"flip", f.augmentation.flip}}}};
  // Recorded only when set, so that runs from before the option resume.
  if (o.holdout > 0) json["holdout"] = o.holdout;
  if (o.method != "rd" && !o.rd.keep_dense.empty()) json["keep_dense"] = o.rd.keep_dense;
  if (o.method == "rd") {
    json["rd"] = {{"min_sparsity", o.rd.min_sparsity},
                  {"max_sparsity", o.rd.max_sparsity},
                  {"keep_dense", o.rd.keep_dense},
                  {"solver", o.rd.solver},
                  {"metric", o.curves.metric},
                  {"levels", o.curves.levels},
                  {"tail", o.curves.tail},
                  {"estimator", o.curves.estimator},
                  {"bn_aware", o.curves.recalibrate_bn},
                  {"refine", o.refine},
                  {"refine_from", o.refine_from},
                  {"recovery_steps", recovery_steps(o)},
                  {"blends", blend_count(o)},
                  {"judge_size", judge_count(o)},
                  {"judge_by", judge_metric(o)},
                  {"judge_at", judge_target(o)}};
    // Recorded only when set, so that runs from before the option resume.
    if (const int64_t exchanges = exchange_count(o, layers); exchanges > 0)
      json["rd"]["exchanges"] = exchanges;
    // Recorded only when paths are judged, so that runs from before the option resume.
    if (judge_target(o) == "path")
      json["rd"]["paths"] = o.paths < 0 ? nlohmann::json("all") : nlohmann::json(o.paths);
  }
  return json;
}

// Records the settings and what the run starts from (the model's fingerprint, and the training and
// test images' as `data`) in `dir`, or checks them against those a previous run recorded there (a
// record from before either was kept is checked without it).
void check_settings(const fs::path& dir, const PipelineOptions& options, Network& network,
                    const nlohmann::json& data) {
  nlohmann::json settings = settings_json(options, network.layers().size());
  settings["model"] = fingerprint(network);
  settings["data"] = data;
  // The thread count changes the order of torch's sums, and so the last bits of fine-tuned weights:
  // recorded, and named when a rerun differs, but a rerun on another machine may still resume.
  const int threads = at::get_num_threads();
  const fs::path path = dir / "settings.json";
  if (fs::exists(path)) {
    nlohmann::json recorded;
    try {
      recorded = nlohmann::json::parse(read_file(path.string()));
    } catch (const nlohmann::json::exception&) {
      throw Error(path.string() + ": not a JSON settings record");
    }
    if (!recorded.is_object()) throw Error(path.string() + ": not a JSON settings record");
    if (recorded.contains("threads")) {
      if (!recorded["threads"].is_number_integer())
        throw Error(path.string() + ": threads: expected a thread count");
      // Once per process: a compare resuming many cells says it once.
      static bool noted = false;
      if (recorded["threads"] != threads && options.progress && !noted) {
        noted = true;
        std::cerr << fmt::format(
            "note: {} was started with {} threads and resumes with {}; rounds run now may differ in the "
            "last bits from a run with one thread count\n",
            dir.string(), recorded["threads"].get<int64_t>(), threads);
      }
      recorded.erase("threads");
    }
    for (const auto& [key, what] : {std::pair<const char*, const char*>{"model", "from another model"},
                                    {"data", "on other data (images, labels or normalisation)"}}) {
      if (!recorded.contains(key)) {
        settings.erase(key);
      } else if (recorded[key] != settings[key]) {
        throw UsageError("--out-dir: " + dir.string() + " holds a run started " + what +
                         "; use another directory, or remove it to start over");
      }
    }
    if (recorded != settings) {
      std::string differs;
      for (const auto& [key, value] : settings.items()) {
        if (!recorded.contains(key) || recorded[key] != value) differs += (differs.empty() ? "" : ", ") + key;
      }
      for (const auto& [key, value] : recorded.items()) {  // set then, not now
        if (!settings.contains(key)) differs += (differs.empty() ? "" : ", ") + key;
      }
      throw UsageError("--out-dir: " + dir.string() + " holds a run started with other settings (" + differs +
                       "); use another directory, or remove it to start over");
    }
    return;
  }
  if (fs::exists(dir / "round-1")) {
    throw UsageError("--out-dir: " + dir.string() +
                     " holds rounds of a run whose settings are not on record; use another directory, or "
                     "remove it to start over");
  }
  settings["threads"] = threads;
  write_file_atomic(path.string(), settings.dump(1) + "\n");
}

// What to do about a damaged record of the finished round in `dir`.
std::string rerun_remedy(const fs::path& dir) {
  return "; remove " + dir.string() + " to run that round again";
}

// A finished round's figures, its plan (and curves) checked on the way: a damaged record is named,
// with what to do, rather than carried into the run's report.
RoundResult resumed_round(const fs::path& dir, int64_t index, double target) {
  const std::string remedy = rerun_remedy(dir);
  const fs::path metrics = dir / "metrics.json";
  const fs::path plan = dir / "plan.json";
  const fs::path curves = dir / "curves.json";
  RoundResult round;
  try {
    round = round_from_json(nlohmann::json::parse(read_file(metrics.string())));
  } catch (const nlohmann::json::exception& e) {
    throw Error(metrics.string() + ": damaged (" + e.what() + ")" + remedy);
  }
  // Figures no run writes: the record was edited or belongs to another round.
  const auto fraction = [](double value) { return value >= 0 && value <= 1; };
  const bool plausible = round.round == index && std::abs(round.sparsity_target - target) < 1e-9 &&
                         fraction(round.sparsity_achieved) && fraction(round.flops_sparsity_achieved) &&
                         fraction(round.pruned.top1) && fraction(round.pruned.top5) &&
                         fraction(round.finetuned.top1) && fraction(round.finetuned.top5) &&
                         round.pruned.samples >= 0 && round.finetuned.samples >= 0;
  if (!plausible)
    throw Error(metrics.string() + ": holds figures no run of round " + std::to_string(index) + " writes" +
                remedy);
  if (!fs::exists(plan)) throw Error(plan.string() + ": missing" + remedy);
  try {
    plan_from_json(read_file(plan.string()), plan.string());
    if (fs::exists(curves)) curves_from_json(read_file(curves.string()), curves.string());
  } catch (const Error& e) {
    throw Error(e.what() + remedy);
  }
  return round;
}

std::string model_file(const Network& network) {
  return network.format() == "torchscript" ? "model.ts.pt" : "model.pt";
}

}  // namespace

PipelineResult run_pipeline(std::unique_ptr<Network>& network, const DatasetSplits& data,
                            const PipelineOptions& options) {
  validate(options);
  const std::vector<int64_t> shape = data.train.sample_shape();
  Dataset calibration = data.train.head(options.calib_size);
  std::string calibration_description =
      fmt::format("{} [0:{}]", data.train.description(), calibration.size());
  if (options.synthetic) {
    DatasetOptions synthetic;
    synthetic.name = "synthetic";
    synthetic.input_shape = shape;
    synthetic.synthetic_size = options.calib_size;
    synthetic.seed = options.seed;
    calibration = load_dataset(synthetic).train;
    calibration_description =
        fmt::format("synthetic N(0,1) {}x{} seed {}", options.calib_size,
                    fmt::format("{}x{}x{}", shape[0], shape[1], shape[2]), options.seed);
  }
  const Dataset test = options.eval_limit > 0 ? data.test.head(options.eval_limit) : data.test;
  // Fine-tuning (and rd's recovery) sees the training split less the held-out images; rd judges
  // plans on the held-out images when there are any, else on the training images after the
  // calibration ones.
  const int64_t calibration_used = options.synthetic ? 0 : calibration.size();
  if (options.holdout > 0 && options.holdout > data.train.size() - calibration_used - 1) {
    throw UsageError(
        fmt::format("--holdout: {} images leave none to fine-tune on besides the {} calibration "
                    "ones (the training split has {})",
                    options.holdout, calibration_used, data.train.size()));
  }
  const Dataset tuning =
      options.holdout > 0 ? data.train.head(data.train.size() - options.holdout) : data.train;
  const Dataset judge = options.holdout > 0
                            ? data.train.slice(data.train.size() - options.holdout,
                                               std::min(options.holdout, judge_count(options)))
                            : data.train.slice(calibration_used, judge_count(options));
  if (options.method == "rd" && (options.refine > 0 || !options.refine_from.empty()) &&
      judge_count(options) > 0 && judge.size() == 0) {
    // Nothing after the calibration images: judging falls back to them. Asked for by number, that
    // is an error; under auto, a note.
    const std::string why =
        fmt::format("the {} calibration images take the whole training split, leaving none to judge plans on",
                    calibration_used);
    if (options.judge_size > 0) {
      throw UsageError(
          "--judge-size: " + why +
          "; lower --calib-size, give --holdout N, or --judge-size 0 to judge on the calibration images");
    }
    if (options.progress) std::cerr << "rd: " << why << "; judging on the calibration images\n";
  }
  check_keep_dense(options.rd.keep_dense, names_of(network->layers()), "the model");
  if (!options.out_dir.empty()) {
    fs::create_directories(options.out_dir);
    check_settings(options.out_dir, options, *network,
                   {{"train", data.train.fingerprint()}, {"test", test.fingerprint()}});
  }

  PipelineResult result;
  for (int64_t r = 1; r <= options.rounds; ++r) {
    const double target = round_target(options.schedule, options.rd.sparsity_target, r, options.rounds);
    const fs::path dir =
        options.out_dir.empty() ? fs::path() : fs::path(options.out_dir) / fmt::format("round-{}", r);
    const fs::path metrics_path = dir / "metrics.json";
    if (!dir.empty() && fs::exists(metrics_path) && fs::exists(dir / model_file(*network))) {
      // A finished round: take its model and figures, and go on from there.
      result.rounds.push_back(resumed_round(dir, r, target));
      try {
        network = load_network((dir / model_file(*network)).string());
      } catch (const Error& e) {
        throw Error(e.what() + rerun_remedy(dir));
      }
      if (options.progress) std::cerr << fmt::format("round {}: resumed from {}\n", r, dir.string());
      continue;
    }
    if (!dir.empty()) fs::create_directories(dir);
    RoundResult round;
    round.round = r;
    round.sparsity_target = target;
    const auto infos = layer_census(*network, shape);
    // This round's fine-tuning: rd's recovery judgements run the same steps from the same seed.
    TrainOptions finetune = options.finetune;
    finetune.progress = options.progress;
    finetune.seed = derive_seed(options.finetune.seed, static_cast<uint64_t>(r));
    // Plans are judged by the network the evaluation will see: after recalibration, batch norm
    // runs on statistics of the pruned network, so joint distortions are measured with batch
    // statistics (judged with the dense statistics, plans of collapsed networks win).
    const bool batch_statistics =
        options.curves.recalibrate_bn || (options.bn_recalibrate && !network->buffers().empty());
    Plan plan;
    std::optional<NetworkState> finetuned;  // rd: the chosen plan as its recovery fine-tuned it
    // rd: refinement judged plans at this round's target by their joint distortion on the calibration
    // set, so the chosen step measured what the report records
    bool measured_as_reported = false;
    if (options.method == "rd") {
      CurveOptions curve_options = options.curves;
      curve_options.progress = options.progress;
      const auto start = std::chrono::steady_clock::now();
      const CurveSet curves =
          measure_curves(*network, calibration, calibration_description, infos, curve_options);
      if (!dir.empty()) write_file_atomic((dir / "curves.json").string(), to_json(curves));
      RdOptions rd = options.rd;
      rd.sparsity_target = target;
      // The plans every rule gives at sparsity `at` on the network as it is (`layers`: its census):
      // rd's own from `rd_curves` (none without them), then each allocator named by --refine-from
      // whose plan keeps rd's constraints.
      const auto starts_at = [&](const std::vector<LayerInfo>& layers, const CurveSet* rd_curves, double at) {
        RdOptions bounded = rd;
        bounded.sparsity_target = at;
        std::vector<RefineStart> starts;
        if (rd_curves != nullptr) starts.push_back({"rd", allocate_rd(*rd_curves, bounded)});
        for (const auto& method : options.refine_from) {
          std::string why;
          try {
            Plan start = allocate_baseline(method, *network, layers, baseline_options(rd, at));
            if (honours(start, layers, rd)) {
              starts.push_back({method, std::move(start)});
              continue;
            }
            why = "breaks --min-sparsity or --max-sparsity";
          } catch (const Error& e) {  // the rule cannot meet the budget with the --keep-dense layers
            why = e.what();
          }
          if (options.progress)
            std::cerr << fmt::format("refine: {}'s plan at {:.4f}: {}; not a start\n", method, at, why);
        }
        return starts;
      };
      const std::vector<RefineStart> starts = starts_at(infos, &curves, target);
      plan = starts.front().plan;
      if (options.refine > 0 || !options.refine_from.empty()) {
        const auto save = [&](const std::string&, int64_t pass, const CurveSet& around) {
          if (!dir.empty())
            write_file_atomic((dir / fmt::format("curves-refine-{}.json", pass)).string(), to_json(around));
        };
        CurveOptions refine_options = curve_options;
        refine_options.recalibrate_bn = batch_statistics;
        Recovery recovery;
        recovery.steps = recovery_steps(options);
        recovery.data = &tuning;
        recovery.train = finetune;
        recovery.recalibrate_bn = options.bn_recalibrate;
        if (judge.size() > 0) recovery.judge = &judge;
        recovery.keep_recovered = recovery.steps > 0 && recovery.steps == options.finetune.steps;
        recovery.judge_by = judge_metric(options);
        if (judge_target(options) != "round" && r < options.rounds) {
          // Every rule is judged by the plan it gives at the final target, and the round takes the
          // chosen rule's plan at its own target: a plan that is best part of the way can lead to a
          // worse end (docs/results.md, "Judging at the final target").
          RdOptions final_rd = rd;
          final_rd.sparsity_target = options.rd.sparsity_target;
          recovery.keep_recovered = false;
          const RefineResult ahead =
              refine_rd(*network, calibration, calibration_description, infos, refine_options, final_rd,
                        starts_at(infos, &curves, final_rd.sparsity_target),
                        /*passes=*/0, save, recovery, blend_count(options));
          // The lowest-measuring rule that gives a plan at this round's target too (rd always does;
          // an allocator's or a blend's plan there may break the constraints): the one taken, and
          // marked chosen.
          round.refine = ahead.steps;
          for (auto& step : round.refine) step.chosen = false;
          std::vector<size_t> order = lowest_first(round.refine);
          if (judge_target(options) == "path") {
            // The best --paths rules are followed to the end: this round's plan fine-tuned as the
            // round fine-tunes it, the same rule's plan in every later round, and the last round's
            // judged after recovery, against this round's network. A plan that recovers best at the
            // final target from this round's network can lead to a worse end than another rule's
            // path (docs/results.md, "Judging by the error and judging whole paths").
            const NetworkState at_start = snapshot(*network);
            const torch::Tensor reference =
                judging_reference(*network, calibration, recovery, curve_options.batch_size);
            std::vector<size_t> followed;  // indices of the path judgements in round.refine
            std::vector<NetworkState> after_round;
            for (const size_t i : order) {
              if (options.paths >= 0 && static_cast<int64_t>(followed.size()) >= options.paths) break;
              const std::string rule = round.refine[i].start;
              std::optional<Plan> here = rule_plan(rule, starts, infos, rd);
              if (!here) continue;
              restore(*network, at_start);
              apply_plan(*network, *here, "path plan");
              if (options.bn_recalibrate) recalibrate_batch_norm(*network, calibration);
              if (options.finetune.steps > 0) train(*network, tuning, finetune);
              NetworkState round_state = snapshot(*network);
              // The same rule in every later round, on the network the path has reached.
              const bool uses_rd = rule_uses_rd(rule);
              std::optional<Plan> next;
              for (int64_t later = r + 1; later <= options.rounds; ++later) {
                const double at =
                    round_target(options.schedule, options.rd.sparsity_target, later, options.rounds);
                const auto later_infos = layer_census(*network, shape);
                std::optional<CurveSet> later_curves;
                if (uses_rd)
                  later_curves = measure_curves(*network, calibration, calibration_description, later_infos,
                                                curve_options);
                RdOptions later_rd = rd;
                later_rd.sparsity_target = at;
                next = rule_plan(rule, starts_at(later_infos, later_curves ? &*later_curves : nullptr, at),
                                 later_infos, later_rd);
                if (!next || later == options.rounds) break;
                apply_plan(*network, *next, "path plan");
                if (options.bn_recalibrate) recalibrate_batch_norm(*network, calibration);
                TrainOptions later_finetune = finetune;
                later_finetune.seed = derive_seed(options.finetune.seed, static_cast<uint64_t>(later));
                if (options.finetune.steps > 0) train(*network, tuning, later_finetune);
              }
              // A rule that gives no plan at a later target (its plan there breaks the constraints)
              // cannot be followed to the end, and is not judged.
              if (!next) continue;
              RefineStep step;
              step.start = rule;
              step.path_rounds = options.rounds - r + 1;
              step.recovery_steps = recovery.steps;
              step.sparsity = next->sparsity_achieved();
              // Judged as the last round would judge it (its seed), against this round's network;
              // without fine-tuning, as pruned.
              if (judged_by_recovery(recovery)) step.judged_by = recovery.judge_by;
              Recovery last = recovery;
              last.train.seed = derive_seed(options.finetune.seed, static_cast<uint64_t>(options.rounds));
              step.measured = judge_plan(*network, calibration, *next, refine_options, reference, last);
              if (options.progress) {
                std::cerr << fmt::format("round {}: {}'s path to {:.4f} measures {} {:.6g}\n", r, rule,
                                         options.rd.sparsity_target,
                                         judgement_name(step.judged_by, curve_options.metric), step.measured);
              }
              followed.push_back(round.refine.size());
              round.refine.push_back(step);
              after_round.push_back(std::move(round_state));
            }
            restore(*network, at_start);
            if (!followed.empty()) {
              size_t best = 0;
              for (size_t k = 1; k < followed.size(); ++k) {
                if (round.refine[followed[k]].measured < round.refine[followed[best]].measured) best = k;
              }
              // The best path's plan at this round's target, and the network its fine-tuning left
              // (without fine-tuning, the round prunes and recalibrates as the path did).
              order = {followed[best]};
              if (options.finetune.steps > 0) finetuned = std::move(after_round[best]);
            }
          }
          for (const size_t i : order) {
            std::optional<Plan> ruled = rule_plan(round.refine[i].start, starts, infos, rd);
            if (!ruled) continue;
            plan = std::move(*ruled);
            round.refine[i].chosen = true;
            if (options.progress) {
              std::cerr << fmt::format(
                  "round {}: {}{} judged best at the final target {:.4f}; its plan at "
                  "{:.4f} taken\n",
                  r, round.refine[i].start, round.refine[i].path_rounds > 0 ? "'s path" : "",
                  final_rd.sparsity_target, target);
            }
            break;
          }
          round.judged_at = final_rd.sparsity_target;
        } else {
          RefineResult refined = refine_rd(*network, calibration, calibration_description, infos,
                                           refine_options, rd, starts, options.refine, save, recovery,
                                           blend_count(options), exchange_count(options, infos.size()));
          plan = std::move(refined.plan);
          round.refine = std::move(refined.steps);
          round.judged_at = target;
          measured_as_reported = !judged_by_recovery(recovery);
          // With keep_recovered, recovery ran this round's whole fine-tuning (same steps, data,
          // options and seed): the network it left is what fine-tuning the plan again would make
          // (on the CPU exactly; on an accelerator up to its nondeterministic kernels).
          finetuned = std::move(refined.recovered);
        }
      }
      round.curve_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } else {
      plan = allocate_baseline(options.method, *network, infos, baseline_options(options.rd, target));
    }
    plan.fingerprint = fingerprint(*network);  // the model the plan was made for: this round's start
    if (!dir.empty()) write_file_atomic((dir / "plan.json").string(), to_json(plan));
    {
      const auto chosen = std::find_if(round.refine.begin(), round.refine.end(),
                                       [](const RefineStep& step) { return step.chosen; });
      round.measured_distortion = measured_as_reported && chosen != round.refine.end()
                                      ? chosen->measured  // refinement measured it just so
                                      : joint_distortion(*network, calibration, plan, options.curves.metric,
                                                         options.curves.batch_size, batch_statistics);
    }
    apply_plan(*network, plan, options.method + " plan");
    round.sparsity_achieved = plan.sparsity_achieved();
    round.flops_sparsity_achieved = plan.flops_sparsity_achieved();
    round.predicted_distortion = plan.predicted_distortion;
    round.pruned = evaluate(*network, test, 256, /*progress=*/false);
    round.finetune_from_judgement = finetuned.has_value();
    if (finetuned) {
      restore(*network, *finetuned);
      if (options.progress)
        std::cerr << fmt::format("round {}: the chosen plan was fine-tuned when it was judged\n", r);
    } else {
      if (options.bn_recalibrate) recalibrate_batch_norm(*network, calibration);
      if (options.finetune.steps > 0) train(*network, tuning, finetune);
    }
    round.finetuned = (options.bn_recalibrate || options.finetune.steps > 0)
                          ? evaluate(*network, test, 256, /*progress=*/false)
                          : round.pruned;
    if (options.progress) {
      std::cerr << fmt::format(
          "round {}/{}: {} target {:.4f}, sparsity {:.4f}, top-1 {:.2f}% pruned, {:.2f}% after repair\n", r,
          options.rounds, options.label.empty() ? options.method : options.label, target,
          round.sparsity_achieved, 100 * round.pruned.top1, 100 * round.finetuned.top1);
    }
    if (!dir.empty()) {
      network->save((dir / model_file(*network)).string());
      write_file_atomic((dir / kTestHitsFile).string(), hits_to_text(round.finetuned.hits));
      write_file_atomic(metrics_path.string(), round_json(round).dump(1) + "\n");
    }
    result.rounds.push_back(round);
  }
  return result;
}

}  // namespace rdprune
