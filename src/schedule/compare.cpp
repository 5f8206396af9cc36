#include "rdprune/compare.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "rdprune/atomic_file.h"
#include "rdprune/baselines.h"
#include "rdprune/error.h"
#include "rdprune/hits.h"
#include "rdprune/plan.h"
#include "rdprune/report.h"
#include "rdprune/run_record.h"
#include "rdprune/text.h"

namespace rdprune {
namespace fs = std::filesystem;
namespace {

// One cell of the grid, by its index in each list; `equal_compute`: the method's control against
// select's cell of the same setting and seed.
struct Cell {
  size_t seed = 0;
  size_t method = 0;
  size_t sparsity = 0;
  size_t rounds = 0;
  size_t steps = 0;
  bool equal_compute = false;
  auto order() const { return std::tie(equal_compute, method, sparsity, rounds, steps, seed); }
  auto setting() const { return std::tie(seed, sparsity, rounds, steps); }
};

bool is_baseline(const std::string& method) {
  const auto& baselines = baseline_methods();
  return std::find(baselines.begin(), baselines.end(), method) != baselines.end();
}

// Whether a cell's figures depend on its seed: fine-tuning draws batches by it, and so do select's
// recovery judgements; zero-data calibration draws its inputs by it.
bool seeded(const CompareOptions& o, const Cell& cell) {
  return o.finetune_steps[cell.steps] > 0 || o.base.synthetic || cell.equal_compute ||
         (o.methods[cell.method] == "select" && o.base.allocator.select.recovery_steps > 0);
}

std::string cell_label(const CompareOptions& o, const Cell& cell) {
  return o.methods[cell.method] + (cell.equal_compute ? kEqualComputeSuffix : "");
}

// The options of one cell. Its directory names the seed unless it is 0 and the fine-tuning steps
// when several are compared, so a comparison resumes when seeds are added to its list. The dense
// control's cells run the schedule at target 0, where global prunes nothing: the same
// recalibration, fine-tuning and seeds as every pruned cell, once per setting.
PipelineOptions cell_options(const CompareOptions& o, const Cell& cell) {
  const bool control = o.methods[cell.method] == kDenseControl;
  PipelineOptions options = o.base;
  options.method = control ? "global" : o.methods[cell.method];
  options.label = cell_label(o, cell);
  options.rd.sparsity_target = control ? 0.0 : o.sparsities[cell.sparsity];
  if (control) {
    // Prunes nothing, so nothing to keep dense or bound.
    options.rd.keep_dense.clear();
    options.rd.min_sparsity = 0;
    options.rd.max_sparsity = 1;
  }
  options.rounds = o.rounds[cell.rounds];
  options.finetune.steps = o.finetune_steps[cell.steps];
  options.seed = static_cast<uint64_t>(o.seeds[cell.seed]);
  options.finetune.seed = options.seed;
  std::string name =
      control ? fmt::format("{}-r{}", kDenseControl, options.rounds)
              : fmt::format("{}-s{}-r{}", options.label, o.sparsities[cell.sparsity], options.rounds);
  if (o.finetune_steps.size() > 1) name += fmt::format("-f{}", options.finetune.steps);
  if (options.seed != 0) name += fmt::format("-seed{}", options.seed);
  options.out_dir = (fs::path(o.out_dir) / name).string();
  return options;
}

// Seed by seed, so each seed's comparison is whole before the next begins; the equal-compute
// controls last, after the select cells whose judging they match. A cell whose figures do not
// depend on the seed runs for the first only.
std::vector<Cell> grid(const CompareOptions& o) {
  std::vector<Cell> cells;
  for (const bool equal_compute : {false, true}) {
    if (equal_compute && !o.equal_compute) break;
    for (size_t seed = 0; seed < o.seeds.size(); ++seed) {
      for (size_t method = 0; method < o.methods.size(); ++method) {
        const bool control = o.methods[method] == kDenseControl;
        if (equal_compute && !is_baseline(o.methods[method])) continue;
        for (size_t sparsity = 0; sparsity < o.sparsities.size(); ++sparsity) {
          if (control && sparsity > 0) continue;
          for (size_t round = 0; round < o.rounds.size(); ++round) {
            for (size_t step = 0; step < o.finetune_steps.size(); ++step) {
              const Cell cell{seed, method, sparsity, round, step, equal_compute};
              if (seed > 0 && !seeded(o, cell)) continue;
              cells.push_back(cell);
            }
          }
        }
      }
    }
  }
  return cells;
}

// The final model's per-image outcomes on `test`, as its last round, resumed, recorded them. When
// the round has none or they are damaged, they are measured again from `network`, the cell's final
// model, and recorded if they reproduce the round's top-1. Empty, with a note, when they do not.
std::vector<uint8_t> test_hits(const fs::path& round_dir, Network& network, const Dataset& test, double top1,
                               Sink* sink) {
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
      note(sink, "compare: " + path.string() + " does not match the round's top-1; measuring again");
    } catch (const Error& error) {
      note(sink, std::string("compare: ") + error.what() + "; measuring again");
    }
  }
  std::vector<uint8_t> hits = evaluate(network, test, 256).hits;
  if (!reproduces(hits)) {
    note(sink,
         fmt::format("compare: the model in {} does not reproduce its round's top-1 {:.4f} on {} images; "
                     "its lead is given without the test images' sampling error",
                     round_dir.string(), top1, test.size()));
    return {};
  }
  write_file_atomic(path.string(), hits_to_text(hits));
  return hits;
}

CompareRow cell_row(const std::string& label, const PipelineOptions& options, const PipelineResult& result) {
  const RoundResult& last = result.last();
  CompareRow row;
  row.method = label;
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
  for (const auto& round : result.rounds) {
    row.seconds += round.cost.seconds > 0 ? round.cost.seconds : round.cost.allocation_seconds;
    row.reused_seconds += round.cost.reused_seconds;
    row.train_steps += round.cost.train_steps;
    row.judge_train_steps += round.cost.judge_train_steps;
    row.forward_samples += round.cost.forward_samples;
  }
  return row;
}

nlohmann::json finite_or_null(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json();
}

nlohmann::json row_json(const CompareRow& row) {
  return {{"method", row.method},
          {"sparsity_target", row.sparsity_target},
          {"sparsity_achieved", row.sparsity_achieved},
          {"flops_kept", row.flops_kept},
          {"top1", row.top1},
          {"top5", row.top5},
          {"loss", finite_or_null(row.loss)},
          {"top1_before_finetune", row.top1_pruned},
          {"rounds", row.rounds},
          {"finetune_steps", row.finetune_steps},
          {"seed", row.seed},
          {"measured_distortion", finite_or_null(row.measured_distortion)},
          {"seconds", row.seconds},
          {"reused_seconds", row.reused_seconds},
          {"train_steps", row.train_steps},
          {"judge_train_steps", row.judge_train_steps},
          {"forward_samples", row.forward_samples}};
}

nlohmann::json summary_json(const CompareSummary& s) {
  return {{"method", s.method},
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
          {"vs_dense_se", finite_or_null(s.vs_dense_se)}};
}

}  // namespace

void validate(const CompareOptions& o) {
  require_distinct(o.methods, "methods");
  std::vector<std::string> known =
      o.base.allocator.granularity == "channel" ? channel_allocator_names() : allocator_names();
  known.push_back(kDenseControl);
  for (const auto& method : o.methods) require_one_of("methods", method, known, "method");
  if (o.sparsities.empty()) throw UsageError("sparsities", "expected at least one target");
  for (const double s : o.sparsities) check_sparsity_target(s, "sparsities");
  require_distinct(o.sparsities, "sparsities");
  require_distinct(o.rounds, "rounds");
  require_distinct(o.finetune_steps, "finetune_steps");
  require_distinct(o.seeds, "seeds");
  if (o.equal_compute && std::find(o.methods.begin(), o.methods.end(), "select") == o.methods.end())
    throw UsageError("equal_compute",
                     "needs select among the methods: its judging steps are what is matched");
  for (const Cell& cell : grid(o)) {
    if (cell.seed == 0 && cell.sparsity == 0) validate(cell_options(o, cell));
  }
  if (fs::exists(o.out_dir) && !fs::is_directory(o.out_dir))
    throw UsageError("out_dir", o.out_dir + " exists and is not a directory");
}

nlohmann::json run_compare(const CompareOptions& o, const DatasetSplits& splits) {
  validate(o);
  Sink* sink = o.base.sink;
  const bool writes = writes_files(o.base.group);
  if (writes) fs::create_directories(o.out_dir);
  const Dataset test = o.base.eval_limit > 0 ? splits.test.head(o.base.eval_limit) : splits.test;
  const double dense_top1 =
      evaluate(*load_network(o.model, o.base.load), test, 256, nullptr, o.base.group).top1;
  std::vector<std::pair<Cell, CompareRow>> done;
  std::map<std::tuple<size_t, size_t, size_t, size_t>, std::vector<int64_t>> select_judging;  // by setting
  std::vector<std::pair<std::string, Plan>> densest_plans;  // first seed and setting, highest target
  std::string rd_curves;                                    // the first rd cell's round-1 curves
  for (const Cell& cell : grid(o)) {
    PipelineOptions options = cell_options(o, cell);
    if (cell.equal_compute) {
      const auto judged = select_judging.find(cell.setting());
      const auto& steps = judged == select_judging.end() ? std::vector<int64_t>{} : judged->second;
      if (std::all_of(steps.begin(), steps.end(), [](int64_t s) { return s == 0; })) {
        note(sink, fmt::format("compare: {}: select spent no steps judging here; no control to run",
                               options.label));
        continue;
      }
      options.extra_finetune_steps = steps;
    }
    const bool control = o.methods[cell.method] == kDenseControl;
    note(sink,
         fmt::format("compare: {}{}{}{}",
                     control ? "dense control, unpruned"
                             : fmt::format("{} at sparsity {}", options.label, options.rd.sparsity_target),
                     o.rounds.size() > 1 ? fmt::format(", {} rounds", options.rounds) : "",
                     o.finetune_steps.size() > 1 ? fmt::format(", {} steps", options.finetune.steps) : "",
                     o.seeds.size() > 1 ? fmt::format(", seed {}", options.seed) : ""));
    auto network = load_network(o.model, o.base.load);  // every cell from the same dense model
    const PipelineResult result = run_pipeline(network, splits, options);
    if (options.method == "select") {
      std::vector<int64_t>& steps = select_judging[cell.setting()];
      // What select trained beyond the round's fine-tuning (with its judged network kept, the
      // chosen plan's recovery was that fine-tuning).
      for (const auto& round : result.rounds)
        steps.push_back(round.cost.train_steps - options.finetune.steps);
    }
    if (!writes) continue;  // the other processes helped; rank 0 keeps the record
    CompareRow row = cell_row(options.label, options, result);
    const fs::path round_dir = fs::path(options.out_dir) / fmt::format("round-{}", options.rounds);
    // A round run now holds its outcomes; one resumed from disk has them on record (or not yet).
    row.top1_hits = result.last().resumed ? test_hits(round_dir, *network, test, row.top1, sink)
                                          : result.last().finetuned.hits;
    done.emplace_back(cell, row);
    if (cell.seed == 0 && cell.rounds == 0 && cell.steps == 0 && !control && !cell.equal_compute) {
      if (cell.sparsity + 1 == o.sparsities.size()) {
        const fs::path plan = round_dir / "plan.json";
        densest_plans.emplace_back(options.label, plan_from_json(read_file(plan.string()), plan.string()));
      }
      if (options.method == "rd" && rd_curves.empty())
        rd_curves = (fs::path(options.out_dir) / "round-1" / "curves.json").string();
    }
  }
  if (!writes) return {};
  std::stable_sort(done.begin(), done.end(),
                   [](const auto& a, const auto& b) { return a.first.order() < b.first.order(); });
  std::vector<CompareRow> rows;
  nlohmann::json results = nlohmann::json::array();
  for (const auto& [cell, row] : done) {
    rows.push_back(row);
    results.push_back(row_json(row));
  }
  const std::vector<CompareSummary> summary = summarize_compare(rows);
  nlohmann::json summaries = nlohmann::json::array();
  for (const auto& s : summary) summaries.push_back(summary_json(s));
  const auto test_samples = static_cast<int64_t>(test.size());
  write_compare_tables(o.out_dir, rows, dense_top1, test_samples);
  bool drawn = plot_accuracy(o.out_dir, summary, dense_top1);
  drawn = plot_layer_sparsity(o.out_dir, densest_plans,
                              fmt::format("Layer sparsity at {:.2f}", o.sparsities.back())) &&
          drawn;
  if (!rd_curves.empty())
    drawn = plot_curves(o.out_dir, curves_from_json(read_file(rd_curves), rd_curves)) && drawn;
  if (!drawn)
    note(sink,
         "compare: gnuplot could not draw every plot (see the .log beside it); data and scripts are kept");
  const nlohmann::json json = {{"dense_top1", dense_top1},
                               {"test_samples", test_samples},
                               {"results", results},
                               {"summary", summaries},
                               {"out_dir", o.out_dir}};
  write_file_atomic((fs::path(o.out_dir) / "results.json").string(), json.dump(1) + "\n");
  return json;
}

}  // namespace rdprune
