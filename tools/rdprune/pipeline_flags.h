// Flags shared by `rdprune run` and `rdprune compare`: the schedule, the allocator and its preset,
// the layer constraints, select's search and fine-tuning.
#pragma once

#include <CLI/CLI.hpp>

#include "common.h"
#include "rdprune/pipeline.h"

namespace rdprune::cli {

struct PipelineFlags {
  PipelineOptions options;
  std::string budget = "params";
  std::string keep_dense;
  std::string pool = "rd,global,lamp,erk";
  std::string judge = "distortion";
  bool no_cache = false;
  std::string cache_dir;  // empty: <out-dir>/cache
  DistFlags dist;
  std::unique_ptr<ProcessGroup> group;  // joined by finish_pipeline_flags
};

// compare's lists: every cell runs at each of these values (run takes one of each).
struct PipelineGrid {
  std::string rounds = "1";
  std::string finetune_steps = "0";
  std::string seeds = "0";
};

// With `grid`, --rounds, --finetune-steps and --seed take comma-separated lists into it.
void add_pipeline_flags(CLI::App& command, PipelineFlags& flags, PipelineGrid* grid = nullptr);
// Completes `flags.options` after parsing: the preset expanded under the values given on the
// command line, the budget, lists, select's judge and the cache directory under `out_dir`. The one
// place the pipeline's options are resolved. Joins the processes the launcher started, shares the
// curves, fine-tuning and evaluations out among them, and gives rank 0 alone the progress sink.
void finish_pipeline_flags(const CLI::App& command, PipelineFlags& flags, const std::string& out_dir);

}  // namespace rdprune::cli
