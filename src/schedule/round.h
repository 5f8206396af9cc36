// One round of the schedule: allocate -> prune -> [recalibrate] -> fine-tune -> evaluate -> record.
#pragma once

#include <filesystem>
#include <string>

#include "rdprune/allocator.h"
#include "rdprune/dataset.h"
#include "rdprune/pipeline.h"

namespace rdprune {

// What every round of one run works with.
struct RoundInputs {
  const PipelineOptions& options;
  const Dataset& calibration;
  std::string calibration_description;
  const Dataset& tuning;   // fine-tuning data: the training split less the held-out images
  const Dataset& judging;  // images select may judge plans on
  const Dataset& test;
  std::vector<int64_t> shape;  // one sample's shape, for the census
};

// Runs round `r` (1-based) at sparsity `target` on `network` with `allocator`, writing its
// artifacts into `dir` (empty: nowhere).
RoundResult run_round(Network& network, const RoundInputs& in, Allocator& allocator, int64_t r, double target,
                      const std::filesystem::path& dir);

}  // namespace rdprune
