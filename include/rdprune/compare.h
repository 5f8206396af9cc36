// The grid behind `rdprune compare`: every method at every sparsity (and rounds count, fine-tuning
// length, seed), each cell a run of the schedule from the same dense model with the same data,
// seeds and fine-tuning, then the tables, plots and results.json of the report.
#pragma once

#include "rdprune/layering.h"

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rdprune/dataset.h"
#include "rdprune/pipeline.h"
#include "rdprune/sink.h"

namespace rdprune {

RDPRUNE_LAYER(5, "schedule");

// The equal-compute control of a baseline against select: the baseline given, round by round, the
// training steps select took beyond the round's fine-tuning in the same setting and seed
// ("global@select").
inline constexpr const char* kEqualComputeSuffix = "@select";

struct CompareOptions {
  PipelineOptions base;  // what every cell shares; method, target, rounds, steps and seed are the grid's
  std::vector<std::string> methods = {"rd",      "lamp",     "global",
                                      "uniform", "uniform+", "erk"};  // "dense": the control
  std::vector<double> sparsities = {0.8, 0.9, 0.95};
  std::vector<int64_t> rounds = {1};
  std::vector<int64_t> finetune_steps = {0};
  std::vector<int64_t> seeds = {0};
  bool equal_compute = false;  // add each baseline's equal-compute control against select
  std::string model;           // the dense model's file; every cell loads it afresh
  std::string out_dir;
};

// Throws UsageError naming the option at fault (repeated entries, unknown methods, bad targets).
void validate(const CompareOptions& options);

// Runs every cell not finished in out_dir, writes results.csv, results.md, results.json and the
// plots there, and returns results.json's object.
// On the processes other than rank 0 of options.base.group: null, having written nothing.
nlohmann::json run_compare(const CompareOptions& options, const DatasetSplits& splits);

}  // namespace rdprune
