// The plan both the plan and the metrics targets seed with.
#pragma once

#include "rdprune/plan.h"

namespace rdprune::fuzz {

inline Plan seed_plan() {
  Plan plan;
  plan.method = "uniform";
  plan.sparsity_target = 0.5;
  plan.layers = {{"fc1", 64, 32, 1}, {"fc2", 16, 8, 1}};
  return plan;
}

}  // namespace rdprune::fuzz
