// Flags shared by `rdprune run` and `rdprune compare`: the schedule, the allocator constraints,
// curve measurement and fine-tuning.
#pragma once

#include <CLI/CLI.hpp>

#include "rdprune/pipeline.h"

namespace rdprune::cli {

struct PipelineFlags {
  PipelineOptions options;
  std::string budget = "params";
  std::string keep_dense;
  std::string refine_from = "all";
  std::string recovery_steps = "auto";
  std::string blends = "auto";
  std::string exchanges = "auto";
  std::string paths = "all";
  std::string judge_size = "auto";
  bool no_cache = false;
  std::string cache_dir;  // empty: <out-dir>/cache
};

// compare's lists: every cell runs at each of these values (run takes one of each).
struct PipelineGrid {
  std::string rounds = "1";
  std::string finetune_steps = "0";
  std::string seeds = "0";
};

// With `grid`, --rounds, --finetune-steps and --seed take comma-separated lists into it.
void add_pipeline_flags(CLI::App& command, PipelineFlags& flags, PipelineGrid* grid = nullptr);
// Completes `flags.options` (budget, keep-dense list, cache directory under `out_dir`).
void finish_pipeline_flags(PipelineFlags& flags, const std::string& out_dir);

}  // namespace rdprune::cli
