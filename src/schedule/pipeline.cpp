#include "rdprune/pipeline.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/recovery.h"
#include "rdprune/run_record.h"
#include "round.h"

namespace rdprune {
namespace fs = std::filesystem;

void validate(const PipelineOptions& options) {
  make_allocator(options.method, options.allocator);  // an unknown method throws, naming the known ones
  validate(options.rd);
  validate(options.allocator);
  if (options.rounds < 1 || options.rounds > 100) throw UsageError("rounds", "expected a count in [1, 100]");
  if (options.schedule != "geometric" && options.schedule != "linear")
    throw UsageError("schedule", "expected geometric or linear, got '" + options.schedule + "'");
  if (options.calib_size <= 0) throw UsageError("calib_size", "expected a positive count");
  // Activation-aware scores need real activations: N(0,1) inputs say nothing about them.
  if (options.synthetic && options.allocator.criterion == "wanda")
    throw UsageError("criterion",
                     "wanda weighs weights by their inputs on real images; synthetic calibration has none");
  if (options.synthetic && options.method == "owl")
    throw UsageError("method",
                     "owl scores outliers on real images' activations; synthetic calibration has none");
  if (options.allocator.granularity == "channel" && options.method == "rd" && options.group != nullptr &&
      options.group->size() > 1)
    throw UsageError("granularity", "channel curves run in one process in this version");
  // The channel rules choose every group's width themselves (docs/channels.md, "Baselines").
  if (options.allocator.granularity == "channel" && options.method != "rd" &&
      (options.rd.min_sparsity > 0 || options.rd.max_sparsity < 1))
    throw UsageError(options.rd.min_sparsity > 0 ? "min_sparsity" : "max_sparsity",
                     "per-group bounds are for rd's channel plans, not " + options.method + "'s");
  if (options.holdout < 0 || options.holdout > 10000000)
    throw UsageError("holdout", "expected a count in [0, 10000000]");
  if (options.finetune.steps > 0) {
    validate(options.finetune, "finetune.lr");
  } else {
    validate_optimizer(options.finetune, "finetune.lr");  // unused, but a bad value is an error
  }
  if (options.finetune.steps < 0) throw UsageError("finetune.steps", "expected a count >= 0");
  for (const int64_t extra : options.extra_finetune_steps) {
    if (extra < 0) throw UsageError("extra_finetune_steps", "expected counts >= 0");
  }
  if (options.eval_limit < 0) throw UsageError("eval_limit", "expected a count >= 0");
  // Judged against labels, select needs judging images: the calibration images are not judged on
  // by labels.
  const SelectSettings& select = options.allocator.select;
  if (options.method == "select" && judged_by_labels(select.judge_by) && select.judge_size == 0)
    throw UsageError("judge_by", select.judge_by + " needs judging images with labels (a judge size > 0)");
  if (!options.out_dir.empty() && fs::exists(options.out_dir) && !fs::is_directory(options.out_dir))
    throw UsageError("out_dir", options.out_dir + " exists and is not a directory");
}

bool writes_files(const ProcessGroup* group) {
  return group == nullptr || group->is_root();
}

double round_target(const std::string& schedule, double final_target, int64_t r, int64_t rounds) {
  if (r >= rounds) return final_target;
  const double fraction = static_cast<double>(r) / static_cast<double>(rounds);
  if (schedule == "linear") return final_target * fraction;
  // Geometric: each round prunes the same fraction a of what is left; (1 - a)^R = 1 - S.
  return 1.0 - std::pow(1.0 - final_target, fraction);
}

namespace {

// The calibration images: the first calib_size training images, or N(0,1) inputs (zero-data).
std::pair<Dataset, std::string> calibration_set(const DatasetSplits& data, const PipelineOptions& options) {
  if (!options.synthetic) {
    Dataset calibration = data.train.head(options.calib_size);
    std::string description = fmt::format("{} [0:{}]", data.train.description(), calibration.size());
    return {calibration, description};
  }
  const std::vector<int64_t> shape = data.train.sample_shape();
  DatasetOptions synthetic;
  synthetic.name = "synthetic";
  synthetic.input_shape = shape;
  synthetic.synthetic_size = options.calib_size;
  synthetic.seed = options.seed;
  return {load_dataset(synthetic).train,
          fmt::format("synthetic N(0,1) {}x{} seed {}", options.calib_size,
                      fmt::format("{}x{}x{}", shape[0], shape[1], shape[2]), options.seed)};
}

}  // namespace

PipelineResult run_pipeline(std::unique_ptr<Network>& network, const DatasetSplits& data,
                            const PipelineOptions& options) {
  validate(options);
  const auto [calibration, calibration_description] = calibration_set(data, options);
  const Dataset test = options.eval_limit > 0 ? data.test.head(options.eval_limit) : data.test;
  // Fine-tuning sees the training split less the held-out images; select judges plans on the
  // held-out images when there are any, else on the training images after the calibration ones.
  const int64_t calibration_used = options.synthetic ? 0 : calibration.size();
  const int64_t train_size = data.train.size();
  if (options.holdout > 0 && options.holdout > train_size - calibration_used - 1) {
    throw UsageError("holdout", fmt::format("{} images leave none to fine-tune on besides the {} calibration "
                                            "ones (the training split has {})",
                                            options.holdout, calibration_used, train_size));
  }
  const Dataset tuning = options.holdout > 0 ? data.train.head(train_size - options.holdout) : data.train;
  const Dataset judging = options.holdout > 0
                              ? data.train.slice(train_size - options.holdout, options.holdout)
                              : data.train.slice(calibration_used, train_size);
  check_keep_dense(options.rd.keep_dense, names_of(network->layers()), "the model");
  const bool writes = writes_files(options.group);
  if (!options.out_dir.empty() && writes) {
    fs::create_directories(options.out_dir);
    check_settings(options.out_dir, options, *network,
                   {{"train", data.train.fingerprint()}, {"test", test.fingerprint()}}, options.sink);
  }
  const std::vector<int64_t> shape = data.train.sample_shape();
  const CensusCost run_cost =
      options.allocator.granularity == "channel" ? census_cost(layer_census(*network, shape)) : CensusCost();
  const RoundInputs inputs{options, calibration, calibration_description, tuning, judging, test,
                           shape,   run_cost};
  const std::unique_ptr<Allocator> allocator = make_allocator(options.method, options.allocator);
  PipelineResult result;
  for (int64_t r = 1; r <= options.rounds; ++r) {
    const double target = round_target(options.schedule, options.rd.sparsity_target, r, options.rounds);
    const fs::path dir =
        options.out_dir.empty() ? fs::path() : fs::path(options.out_dir) / fmt::format("round-{}", r);
    if (!dir.empty() && fs::exists(dir / "metrics.json") && fs::exists(dir / model_file(*network))) {
      // A finished round: take its model and figures, and go on from there.
      result.rounds.push_back(resumed_round(dir, r, target));
      try {
        network = load_network((dir / model_file(*network)).string(), options.load);
      } catch (const Error& e) {
        throw Error(e.what() + rerun_remedy(dir));
      }
      note(options.sink, fmt::format("round {}: resumed from {}", r, dir.string()));
      continue;
    }
    if (!dir.empty() && writes) fs::create_directories(dir);
    result.rounds.push_back(run_round(network, inputs, *allocator, r, target, writes ? dir : fs::path()));
  }
  return result;
}

}  // namespace rdprune
