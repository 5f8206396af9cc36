// rdprune compare --model M --dataset D --methods ... --sparsities ... --out-dir DIR
// Every cell starts from the same dense model with the same data, seeds and fine-tuning.
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "pipeline_flags.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/report.h"
#include "rdprune/text.h"

namespace rdprune::cli {
namespace fs = std::filesystem;
namespace {

struct CompareFlags {
  CommonFlags common;
  DataFlags data;
  PipelineFlags pipeline;
  std::string model;
  std::string methods = "rd,lamp,global,uniform,uniform+,erk";
  std::string sparsities = "0.8,0.9,0.95";
  std::string out_dir;
};

void run_compare(CompareFlags& flags) {
  apply_threads(flags.common);
  const auto methods = split_list(flags.methods, "--methods");
  const auto sparsities = parse_doubles(flags.sparsities, "--sparsities");
  for (double s : sparsities) check_sparsity_target(s, "--sparsities");
  if (fs::exists(flags.out_dir) && !fs::is_directory(flags.out_dir)) {
    throw UsageError("--out-dir: " + flags.out_dir + " exists and is not a directory");
  }
  finish_pipeline_flags(flags.pipeline, flags.out_dir);
  for (const auto& method : methods) {
    PipelineOptions check = flags.pipeline.options;
    check.method = method;
    check.rd.sparsity_target = sparsities.front();
    validate(check);
  }
  auto dense = load_model(flags.model);
  if (dense->layers().empty())
    throw Error(flags.model + ": model has no prunable layers (no Conv2d or Linear weights)");
  const DatasetSplits splits = load_dataset(dataset_options(flags.data, &dense->meta()));
  check_model_fits(*dense, splits.train);
  fs::create_directories(flags.out_dir);
  const Dataset test = flags.pipeline.options.eval_limit > 0
                           ? splits.test.head(flags.pipeline.options.eval_limit)
                           : splits.test;
  const double dense_top1 = evaluate(*dense, test, 256, /*progress=*/false).top1;
  const auto dense_infos = layer_census(*dense, splits.train.sample_shape());

  std::vector<CompareRow> rows;
  nlohmann::json results = nlohmann::json::array();
  std::vector<std::pair<std::string, Plan>> densest_plans;
  for (const auto& method : methods) {
    for (double sparsity : sparsities) {
      PipelineOptions options = flags.pipeline.options;
      options.method = method;
      options.rd.sparsity_target = sparsity;
      options.out_dir =
          (fs::path(flags.out_dir) / fmt::format("{}-s{}-r{}", method, sparsity, options.rounds)).string();
      std::cerr << fmt::format("compare: {} at sparsity {}\n", method, sparsity);
      auto network = load_model(flags.model);  // every cell from the same dense model
      const PipelineResult result = run_pipeline(network, splits, options);
      const RoundResult& last = result.last();
      CompareRow row;
      row.method = method;
      row.sparsity_target = sparsity;
      row.sparsity_achieved = last.sparsity_achieved;
      row.flops_kept = 1.0 - last.flops_sparsity_achieved;
      row.rounds = options.rounds;
      row.finetune_steps = options.finetune.steps;
      row.top1_pruned = last.pruned.top1;
      row.top1 = last.finetuned.top1;
      row.top5 = last.finetuned.top5;
      row.loss = last.finetuned.loss;
      row.measured_distortion = last.measured_distortion.value_or(std::nan(""));
      rows.push_back(row);
      results.push_back({{"method", method},
                         {"sparsity_target", sparsity},
                         {"sparsity_achieved", row.sparsity_achieved},
                         {"flops_kept", row.flops_kept},
                         {"top1", row.top1},
                         {"top5", row.top5},
                         {"loss", row.loss},
                         {"top1_before_finetune", row.top1_pruned},
                         {"rounds", row.rounds},
                         {"finetune_steps", row.finetune_steps},
                         {"measured_distortion", std::isfinite(row.measured_distortion)
                                                     ? nlohmann::json(row.measured_distortion)
                                                     : nlohmann::json()}});
      if (sparsity == sparsities.back()) {
        const fs::path plan =
            fs::path(options.out_dir) / fmt::format("round-{}", options.rounds) / "plan.json";
        densest_plans.emplace_back(method, plan_from_json(read_file(plan.string()), plan.string()));
      }
    }
  }
  write_compare_tables(flags.out_dir, rows, dense_top1);
  plot_accuracy(flags.out_dir, rows, dense_top1);
  plot_layer_sparsity(flags.out_dir, densest_plans,
                      fmt::format("Layer sparsity at {:.2f}", sparsities.back()));
  for (const auto& method : methods) {
    if (method != "rd") continue;
    const fs::path curves = fs::path(flags.out_dir) /
                            fmt::format("rd-s{}-r{}", sparsities.front(), flags.pipeline.options.rounds) /
                            "round-1" / "curves.json";
    plot_curves(flags.out_dir, curves_from_json(read_file(curves.string()), curves.string()));
  }
  const nlohmann::json json = {{"dense_top1", dense_top1}, {"results", results}, {"out_dir", flags.out_dir}};
  write_file_atomic((fs::path(flags.out_dir) / "results.json").string(), json.dump(1) + "\n");
  std::string human = read_file((fs::path(flags.out_dir) / "results.md").string());
  human += "\nwrote results.csv, results.md, results.json and plots to " + flags.out_dir + "\n";
  emit(flags.common, json, human);
}

}  // namespace

void register_compare(CLI::App& app) {
  auto flags = std::make_shared<CompareFlags>();
  auto* command = app.add_subcommand("compare", "Every method at every sparsity, from the same dense model");
  command->add_option("--model", flags->model, "Dense rdprune checkpoint or TorchScript file")->required();
  command->add_option("--methods", flags->methods,
                      "Comma-separated (default rd,lamp,global,uniform,uniform+,erk)");
  command->add_option("--sparsities", flags->sparsities,
                      "Comma-separated targets in [0, 1) (default 0.8,0.9,0.95)");
  command->add_option("--out-dir", flags->out_dir, "Directory for tables, plots and every cell's rounds")
      ->required();
  add_pipeline_flags(*command, flags->pipeline);
  add_common_flags(*command, flags->common);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags] { run_compare(*flags); });
}

}  // namespace rdprune::cli
