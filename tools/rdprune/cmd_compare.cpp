// rdprune compare --model M --dataset D --methods ... --sparsities ... --out-dir DIR
// Parses the grid; the grid itself runs in the library (rdprune/compare.h).
#include <algorithm>
#include <filesystem>

#include "commands.h"
#include "common.h"
#include "pipeline_flags.h"
#include "rdprune/allocator.h"
#include "rdprune/atomic_file.h"
#include "rdprune/compare.h"
#include "rdprune/error.h"
#include "rdprune/run_record.h"
#include "rdprune/text.h"

namespace rdprune::cli {
namespace fs = std::filesystem;
namespace {

struct CompareFlags {
  CommonFlags common;
  DataFlags data;
  PipelineFlags pipeline;
  PipelineGrid grid;
  std::string model;
  std::string methods;  // empty: the granularity's default
  std::string sparsities = "0.8,0.9,0.95";
  bool equal_compute = false;
  std::string out_dir;
};

void run_compare_command(const CLI::App& command, CompareFlags& flags) {
  apply_threads(flags.common);
  CompareOptions options;
  const bool channel = flags.pipeline.options.allocator.granularity == "channel";
  const std::string methods = !flags.methods.empty()
                                  ? flags.methods
                                  : (channel ? "rd,uniform,global" : "rd,lamp,global,uniform,uniform+,erk");
  options.methods = split_list(methods, "--methods");
  options.sparsities = parse_doubles(flags.sparsities, "--sparsities");
  options.rounds = parse_counts(flags.grid.rounds, "--rounds");
  options.finetune_steps = parse_counts(flags.grid.finetune_steps, "--finetune-steps");
  options.seeds = parse_counts(flags.grid.seeds, "--seed");
  options.equal_compute = flags.equal_compute;
  options.model = flags.model;
  options.out_dir = flags.out_dir;
  finish_pipeline_flags(command, flags.pipeline, flags.out_dir);
  options.base = flags.pipeline.options;
  // Without --cache-dir each cell caches its own curves (its cost columns are what it ran); a
  // shared one lets cells reuse each other's.
  validate(options);
  auto dense = load_model(flags.model, options.base.load);
  require_prunable_layers(*dense, flags.model);
  const DatasetSplits splits = load_dataset(dataset_options(flags.data, &dense->meta()));
  check_model_fits(*dense, splits.train, flags.model);
  nlohmann::json json = run_compare(options, splits);
  if (!writes_files(options.base.group)) return;
  // What every cell shares, with the allocator settings of the most demanding method compared: the
  // grid's own values (method, target, rounds, steps, seed) are the cells'.
  PipelineOptions described = options.base;
  for (const char* method : {"rd", "select"}) {
    if (std::find(options.methods.begin(), options.methods.end(), method) != options.methods.end())
      described.method = method;
  }
  if (!uses_calibration(described.method)) described.method = "global";
  nlohmann::json shared = settings_json(described);
  for (const char* key : {"method", "sparsity", "rounds", "seed"}) shared.erase(key);
  shared["finetune"].erase("steps");
  json["settings"] = shared;
  std::string human = read_file((fs::path(flags.out_dir) / "results.md").string());
  human += "\nwrote results.csv, results.md, results.json and plots to " + flags.out_dir + "\n";
  emit(flags.common, json, human);
}

}  // namespace

void register_compare(CLI::App& app) {
  auto flags = std::make_shared<CompareFlags>();
  auto* command = app.add_subcommand("compare", "Every method at every sparsity, from the same dense model");
  command->add_option("--model", flags->model, "Dense rdprune checkpoint or TorchScript file")->required();
  command->add_option(
      "--methods", flags->methods,
      "Comma-separated (default rd,lamp,global,uniform,uniform+,erk; also select, owl, alphapruning; "
      "--granularity channel: rd,uniform,global, also slimming); dense adds the control: the dense model "
      "through the same fine-tuning, unpruned");
  command->add_option("--sparsities", flags->sparsities,
                      "Comma-separated targets in [0, 1) (default 0.8,0.9,0.95)");
  command->add_flag("--equal-compute", flags->equal_compute,
                    "Add each baseline given, round by round, the fine-tuning steps select spent judging "
                    "(rows <baseline>@select); needs select among --methods");
  command->add_option("--out-dir", flags->out_dir, "Directory for tables, plots and every cell's rounds")
      ->required();
  add_pipeline_flags(*command, flags->pipeline, &flags->grid);
  add_common_flags(*command, flags->common);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([command, flags] { run_compare_command(*command, *flags); });
}

}  // namespace rdprune::cli
