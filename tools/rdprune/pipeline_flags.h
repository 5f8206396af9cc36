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
  std::string judge_size = "auto";
  bool no_cache = false;
  std::string cache_dir;  // empty: <out-dir>/cache
};

void add_pipeline_flags(CLI::App& command, PipelineFlags& flags);
// Completes `flags.options` (budget, keep-dense list, cache directory under `out_dir`).
void finish_pipeline_flags(PipelineFlags& flags, const std::string& out_dir);

}  // namespace rdprune::cli
