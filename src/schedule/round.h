// One round of the schedule: allocate -> prune -> [recalibrate] -> fine-tune -> evaluate -> record.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "rdprune/allocator.h"
#include "rdprune/dataset.h"
#include "rdprune/pipeline.h"

namespace rdprune {

// A network's prunable layers' weights and multiply-accumulates per sample, from its census.
struct CensusCost {
  double weights = 0;
  double flops = 0;
  double of(BudgetKind budget) const { return budget == BudgetKind::kFlops ? flops : weights; }
};
CensusCost census_cost(const std::vector<LayerInfo>& layers);

// What every round of one run works with.
struct RoundInputs {
  const PipelineOptions& options;
  const Dataset& calibration;
  std::string calibration_description;
  const Dataset& tuning;   // fine-tuning data: the training split less the held-out images
  const Dataset& judging;  // images select may judge plans on
  const Dataset& test;
  std::vector<int64_t> shape;  // one sample's shape, for the census
  // Channel runs: the cost of the run's model before its first round (census_cost), of which
  // channel rounds' targets and achieved sparsities are fractions (their networks shrink).
  CensusCost run_cost;
};

// Runs round `r` (1-based) at sparsity `target` on `network` with `allocator`, writing its
// artifacts into `dir` (empty: nowhere). A channel round replaces `network` by the smaller network.
RoundResult run_round(std::unique_ptr<Network>& network, const RoundInputs& in, Allocator& allocator,
                      int64_t r, double target, const std::filesystem::path& dir);

}  // namespace rdprune
