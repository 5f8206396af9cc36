// rdprune run --model M --dataset D --method X --sparsity S --out-dir DIR
#include <filesystem>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "pipeline_flags.h"
#include "rdprune/allocator.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/run_record.h"

namespace rdprune::cli {
namespace {

struct RunFlags {
  CommonFlags common;
  DataFlags data;
  PipelineFlags pipeline;
  std::string model;
  std::string out_dir;
  double sparsity = -1;
};

nlohmann::json round_summary(const RoundResult& round) {
  return {{"round", round.round},
          {"sparsity_target", round.sparsity_target},
          {"sparsity_achieved", round.sparsity_achieved},
          {"top1_pruned", round.pruned.top1},
          {"top1", round.finetuned.top1},
          {"measured_distortion",
           round.measured_distortion ? nlohmann::json(*round.measured_distortion) : nlohmann::json()},
          {"seconds", round.cost.seconds},
          {"reused_seconds", round.cost.reused_seconds},
          {"train_steps", round.cost.train_steps},
          {"judge_train_steps", round.cost.judge_train_steps},
          {"forward_samples", round.cost.forward_samples},
          {"resumed", round.resumed}};
}

void run_run(const CLI::App& command, RunFlags& flags) {
  apply_threads(flags.common);
  auto& options = flags.pipeline.options;
  options.rd.sparsity_target = flags.sparsity;
  options.out_dir = flags.out_dir;
  finish_pipeline_flags(command, flags.pipeline, flags.out_dir);
  validate(options);
  auto network = load_model(flags.model, options.load);
  require_prunable_layers(*network, flags.model);
  const DatasetSplits splits = load_dataset(dataset_options(flags.data, &network->meta()));
  check_model_fits(*network, splits.train, flags.model);
  const PipelineResult result = run_pipeline(network, splits, options);
  if (!writes_files(options.group)) return;
  const RoundResult& last = result.last();
  nlohmann::json rounds = nlohmann::json::array();
  for (const auto& round : result.rounds) rounds.push_back(round_summary(round));
  const nlohmann::json json = {{"method", options.method},
                               {"granularity", options.allocator.granularity},
                               {"sparsity_target", options.rd.sparsity_target},
                               {"sparsity_achieved", last.sparsity_achieved},
                               {"flops_sparsity_achieved", last.flops_sparsity_achieved},
                               {"top1", last.finetuned.top1},
                               {"top5", last.finetuned.top5},
                               {"loss", finite_or_null(last.finetuned.loss)},
                               {"samples", last.finetuned.samples},
                               {"top1_before_finetune", last.pruned.top1},
                               {"rounds", rounds},
                               {"settings", settings_json(options)},
                               {"out_dir", flags.out_dir}};
  write_file_atomic((std::filesystem::path(flags.out_dir) / "result.json").string(), json.dump(1) + "\n");
  emit(flags.common, json,
       fmt::format(
           "{} to {:.4f} in {} round(s): sparsity {:.4f}, top-1 {:.2f}% (before fine-tuning {:.2f}%), "
           "top-5 {:.2f}%; artifacts in {}\n",
           options.method, options.rd.sparsity_target, result.rounds.size(), last.sparsity_achieved,
           100 * last.finetuned.top1, 100 * last.pruned.top1, 100 * last.finetuned.top5, flags.out_dir));
}

}  // namespace

void register_run(CLI::App& app) {
  auto flags = std::make_shared<RunFlags>();
  auto* command = app.add_subcommand("run", "Prune (one-shot or iterative), fine-tune and evaluate");
  command->add_option("--model", flags->model, "rdprune checkpoint or TorchScript file")->required();
  command->add_option(
      "--method", flags->pipeline.options.method,
      "rd (default) | select | global | lamp | uniform | uniform+ | erk | owl | alphapruning");
  command->add_option("--sparsity", flags->sparsity, "Final target sparsity in [0, 1)")->required();
  command
      ->add_option("--out-dir", flags->out_dir, "Directory for each round's curves, plan, model and metrics")
      ->required();
  add_pipeline_flags(*command, flags->pipeline);
  add_common_flags(*command, flags->common);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([command, flags] { run_run(*command, *flags); });
}

}  // namespace rdprune::cli
