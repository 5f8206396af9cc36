// rdprune compare --model M --dataset D --methods ... --sparsities ... --out-dir DIR
// Every cell starts from the same dense model with the same data, seeds and fine-tuning.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <tuple>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "pipeline_flags.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/hits.h"
#include "rdprune/report.h"
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
  std::string methods = "rd,lamp,global,uniform,uniform+,erk";
  std::string sparsities = "0.8,0.9,0.95";
  std::string out_dir;
};

// One cell of the grid, by its index in each list.
struct Cell {
  size_t seed = 0;
  size_t method = 0;
  size_t sparsity = 0;
  size_t rounds = 0;
  size_t steps = 0;
  auto order() const { return std::tie(method, sparsity, rounds, steps, seed); }
};

// The final model's per-image outcomes on `test`, as its last round, resumed, recorded them. When the round
// has none (it finished before they were kept) or they are damaged, they are measured again from
// `network`, the cell's final model, and recorded if they reproduce the round's top-1. Empty, with a
// warning, when they do not.
std::vector<uint8_t> test_hits(const fs::path& round_dir, Network& network, const Dataset& test,
                               double top1) {
  const fs::path path = round_dir / kTestHitsFile;
  const auto reproduces = [&](const std::vector<uint8_t>& hits) {
    const auto correct = static_cast<double>(std::count(hits.begin(), hits.end(), uint8_t{1}));
    return static_cast<int64_t>(hits.size()) == test.size() &&
           std::abs(correct / static_cast<double>(test.size()) - top1) <
               0.5 / static_cast<double>(test.size());
  };
  if (fs::exists(path)) {
    try {
      std::vector<uint8_t> hits = hits_from_text(read_file(path.string()), path.string());
      if (reproduces(hits)) return hits;
      std::cerr << "compare: " << path.string() << " does not match the round's top-1; measuring again\n";
    } catch (const Error& error) {
      std::cerr << "compare: " << error.what() << "; measuring again\n";
    }
  }
  std::vector<uint8_t> hits = evaluate(network, test, 256, /*progress=*/false).hits;
  if (!reproduces(hits)) {
    std::cerr << fmt::format(
        "compare: the model in {} does not reproduce its round's top-1 {:.4f} on {} images; its lead is "
        "given without the test images' sampling error\n",
        round_dir.string(), top1, test.size());
    return {};
  }
  write_file_atomic(path.string(), hits_to_text(hits));
  return hits;
}

void run_compare(CompareFlags& flags) {
  apply_threads(flags.common);
  const auto methods = split_list(flags.methods, "--methods");
  const auto sparsities = parse_doubles(flags.sparsities, "--sparsities");
  for (double s : sparsities) check_sparsity_target(s, "--sparsities");
  const auto rounds = parse_counts(flags.grid.rounds, "--rounds");
  const auto steps = parse_counts(flags.grid.finetune_steps, "--finetune-steps");
  const auto seeds = parse_counts(flags.grid.seeds, "--seed");
  require_distinct(methods, "--methods");
  for (const auto& method : methods) require_known_method("--methods", method, {kDenseControl});
  require_distinct(sparsities, "--sparsities");
  require_distinct(rounds, "--rounds");
  require_distinct(steps, "--finetune-steps");
  require_distinct(seeds, "--seed");
  if (fs::exists(flags.out_dir) && !fs::is_directory(flags.out_dir)) {
    throw UsageError("--out-dir: " + flags.out_dir + " exists and is not a directory");
  }
  finish_pipeline_flags(flags.pipeline, flags.out_dir);
  // The options of one cell. Its directory names the seed unless it is 0 and the fine-tuning steps
  // when several are compared, so a comparison resumes when seeds are added to its list.
  // The dense control's cells run the schedule at target 0, where global prunes nothing more (rd's
  // per-layer limits do not reach the baselines): the same recalibration, fine-tuning and seeds as
  // every pruned cell, once per setting.
  const auto is_control = [&](const Cell& cell) { return methods[cell.method] == kDenseControl; };
  const auto cell_options = [&](const Cell& cell) {
    PipelineOptions options = flags.pipeline.options;
    options.method = is_control(cell) ? "global" : methods[cell.method];
    options.label = methods[cell.method];
    options.rd.sparsity_target = is_control(cell) ? 0.0 : sparsities[cell.sparsity];
    if (is_control(cell)) options.rd.keep_dense.clear();  // prunes nothing to keep dense
    options.rounds = rounds[cell.rounds];
    options.finetune.steps = steps[cell.steps];
    options.seed = static_cast<uint64_t>(seeds[cell.seed]);
    options.finetune.seed = options.seed;
    std::string name = is_control(cell) ? fmt::format("{}-r{}", kDenseControl, options.rounds)
                                        : fmt::format("{}-s{}-r{}", options.method, sparsities[cell.sparsity],
                                                      options.rounds);
    if (steps.size() > 1) name += fmt::format("-f{}", options.finetune.steps);
    if (options.seed != 0) name += fmt::format("-seed{}", options.seed);
    options.out_dir = (fs::path(flags.out_dir) / name).string();
    return options;
  };
  // Seed by seed, so each seed's comparison is whole before the next begins. Without fine-tuning,
  // on real calibration images, nothing depends on the seed: those cells run for the first only.
  std::vector<Cell> cells;
  for (size_t seed = 0; seed < seeds.size(); ++seed) {
    for (size_t method = 0; method < methods.size(); ++method) {
      for (size_t sparsity = 0; sparsity < sparsities.size(); ++sparsity) {
        for (size_t round = 0; round < rounds.size(); ++round) {
          for (size_t step = 0; step < steps.size(); ++step) {
            if (seed > 0 && steps[step] == 0 && !flags.pipeline.options.synthetic) continue;
            const Cell cell{seed, method, sparsity, round, step};
            if (is_control(cell) && sparsity > 0) continue;
            cells.push_back(cell);
          }
        }
      }
    }
  }
  for (const Cell& cell : cells) {
    if (cell.seed == 0 && cell.sparsity == 0) validate(cell_options(cell));
  }
  auto dense = load_model(flags.model);
  if (dense->layers().empty())
    throw Error(flags.model + ": model has no prunable layers (no Conv2d or Linear weights)");
  const DatasetSplits splits = load_dataset(dataset_options(flags.data, &dense->meta()));
  check_model_fits(*dense, splits.train, flags.model);
  fs::create_directories(flags.out_dir);
  const Dataset test = flags.pipeline.options.eval_limit > 0
                           ? splits.test.head(flags.pipeline.options.eval_limit)
                           : splits.test;
  const double dense_top1 = evaluate(*dense, test, 256, /*progress=*/false).top1;

  std::vector<std::pair<Cell, CompareRow>> done;
  std::vector<std::pair<std::string, Plan>> densest_plans;  // first seed and setting, highest target
  std::string rd_curves;                                    // the first rd cell's round-1 curves
  for (const Cell& cell : cells) {
    const PipelineOptions options = cell_options(cell);
    std::cerr << fmt::format(
        "compare: {}{}{}{}\n",
        is_control(cell) ? "dense control, unpruned"
                         : fmt::format("{} at sparsity {}", methods[cell.method], options.rd.sparsity_target),
        rounds.size() > 1 ? fmt::format(", {} rounds", options.rounds) : "",
        steps.size() > 1 ? fmt::format(", {} steps", options.finetune.steps) : "",
        seeds.size() > 1 ? fmt::format(", seed {}", options.seed) : "");
    auto network = load_model(flags.model);  // every cell from the same dense model
    const PipelineResult result = run_pipeline(network, splits, options);
    const RoundResult& last = result.last();
    CompareRow row;
    row.method = methods[cell.method];
    row.sparsity_target = options.rd.sparsity_target;
    row.sparsity_achieved = last.sparsity_achieved;
    row.flops_kept = 1.0 - last.flops_sparsity_achieved;
    row.rounds = options.rounds;
    row.finetune_steps = options.finetune.steps;
    row.top1_pruned = last.pruned.top1;
    row.top1 = last.finetuned.top1;
    row.top5 = last.finetuned.top5;
    row.loss = last.finetuned.loss;
    row.measured_distortion = last.measured_distortion.value_or(std::nan(""));
    row.seed = options.seed;
    const fs::path round_dir = fs::path(options.out_dir) / fmt::format("round-{}", options.rounds);
    // A round run now holds its outcomes; one resumed from disk has them on record (or not yet).
    row.top1_hits = last.resumed ? test_hits(round_dir, *network, test, row.top1) : last.finetuned.hits;
    done.emplace_back(cell, row);
    if (cell.seed == 0 && cell.rounds == 0 && cell.steps == 0 && !is_control(cell)) {
      if (cell.sparsity + 1 == sparsities.size()) {
        const fs::path plan = round_dir / "plan.json";
        densest_plans.emplace_back(options.method, plan_from_json(read_file(plan.string()), plan.string()));
      }
      if (options.method == "rd" && rd_curves.empty())
        rd_curves = (fs::path(options.out_dir) / "round-1" / "curves.json").string();
    }
  }
  std::stable_sort(done.begin(), done.end(),
                   [](const auto& a, const auto& b) { return a.first.order() < b.first.order(); });
  std::vector<CompareRow> rows;
  nlohmann::json results = nlohmann::json::array();
  for (const auto& [cell, row] : done) {
    rows.push_back(row);
    results.push_back({{"method", row.method},
                       {"sparsity_target", row.sparsity_target},
                       {"sparsity_achieved", row.sparsity_achieved},
                       {"flops_kept", row.flops_kept},
                       {"top1", row.top1},
                       {"top5", row.top5},
                       {"loss", row.loss},
                       {"top1_before_finetune", row.top1_pruned},
                       {"rounds", row.rounds},
                       {"finetune_steps", row.finetune_steps},
                       {"seed", row.seed},
                       {"measured_distortion", finite_or_null(row.measured_distortion)}});
  }
  const std::vector<CompareSummary> summary = summarize_compare(rows);
  nlohmann::json summary_json = nlohmann::json::array();
  for (const auto& s : summary) {
    summary_json.push_back({{"method", s.method},
                            {"sparsity_target", s.sparsity_target},
                            {"rounds", s.rounds},
                            {"finetune_steps", s.finetune_steps},
                            {"seeds", s.seeds},
                            {"sparsity_achieved", s.sparsity_achieved},
                            {"top1", s.top1},
                            {"top1_sd", finite_or_null(s.top1_sd)},
                            {"best_other", s.rival.empty() ? nlohmann::json() : nlohmann::json(s.rival)},
                            {"lead", finite_or_null(s.lead)},
                            {"lead_se", finite_or_null(s.lead_se)},
                            {"lead_se_seeds", finite_or_null(s.lead_se_seeds)},
                            {"lead_se_test", finite_or_null(s.lead_se_test)},
                            {"vs_dense", finite_or_null(s.vs_dense)},
                            {"vs_dense_se", finite_or_null(s.vs_dense_se)}});
  }
  const auto test_samples = static_cast<int64_t>(test.size());
  write_compare_tables(flags.out_dir, rows, dense_top1, test_samples);
  plot_accuracy(flags.out_dir, summary, dense_top1);
  plot_layer_sparsity(flags.out_dir, densest_plans,
                      fmt::format("Layer sparsity at {:.2f}", sparsities.back()));
  if (!rd_curves.empty()) plot_curves(flags.out_dir, curves_from_json(read_file(rd_curves), rd_curves));
  const nlohmann::json json = {{"dense_top1", dense_top1},
                               {"test_samples", test_samples},
                               {"results", results},
                               {"summary", summary_json},
                               {"out_dir", flags.out_dir}};
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
                      "Comma-separated (default rd,lamp,global,uniform,uniform+,erk); dense adds the "
                      "control: the dense model through the same fine-tuning, unpruned");
  command->add_option("--sparsities", flags->sparsities,
                      "Comma-separated targets in [0, 1) (default 0.8,0.9,0.95)");
  command->add_option("--out-dir", flags->out_dir, "Directory for tables, plots and every cell's rounds")
      ->required();
  add_pipeline_flags(*command, flags->pipeline, &flags->grid);
  add_common_flags(*command, flags->common);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags] { run_compare(*flags); });
}

}  // namespace rdprune::cli
