// rd around its own plan. Per-layer curves are measured with every other layer dense, yet the plan
// prunes them all together, and the distortions of layers pruned together do not add up exactly
// (docs/results.md). Refinement re-measures every curve with the other layers pruned as the plan
// says, solves again, and keeps whichever plan measures the lowest joint distortion.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "rdprune/allocate.h"
#include "rdprune/curves.h"
#include "rdprune/dataset.h"
#include "rdprune/distortion.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"

namespace rdprune {

struct RefineStep {
  int64_t pass = 0;     // 0: the plan from the curves alone
  double measured = 0;  // joint distortion of this pass's plan on the calibration set
  double sparsity = 0;  // the plan's weight sparsity
  bool chosen = false;
};

struct RefineResult {
  Plan plan;                      // the chosen plan
  std::vector<RefineStep> steps;  // one per pass, in order
};

// Starts from `plan` (allocated from `curves`, which were measured on `network` as it is), then
// `passes` times: measures curves around the latest plan, allocates under `rd` again. Returns the
// plan with the lowest measured joint distortion (the earliest on ties). `on_curves` sees each
// pass's curves (to save them). O(passes * curve measurement).
RefineResult refine_rd(Network& network, const Dataset& calibration,
                       const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                       const CurveOptions& curve_options, const RdOptions& rd, const Plan& plan,
                       int64_t passes, const std::function<void(int64_t, const CurveSet&)>& on_curves = {});

}  // namespace rdprune
