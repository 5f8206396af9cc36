// Judging a plan by what fine-tuning makes of it (select's recovery_steps > 0). At high sparsity
// the pruned network's outputs are near chance for every plan, and the plan that measures lowest
// before fine-tuning is not the one fine-tuning recovers best (docs/results.md). Each plan is
// applied, batch norm re-estimated on the calibration set when asked, the network fine-tuned for
// `steps` steps (the round's optimizer and seed, masks held, so the same batches for every plan)
// and then measured in evaluation mode on the judging images.
#pragma once

#include "rdprune/layering.h"

#include <string>

#include "rdprune/dataset.h"
#include "rdprune/distortion.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"
#include "rdprune/refine.h"
#include "rdprune/train.h"

namespace rdprune {

RDPRUNE_LAYER(3, "train");

struct Recovery {
  int64_t steps = 0;              // 0: judge plans as pruned
  const Dataset* data = nullptr;  // the fine-tuning data
  TrainOptions train;             // `steps` replaces train.steps
  bool recalibrate_bn = false;
  // What a recovered network is judged by: "distortion" (against the unpruned network's outputs,
  // in `metric`), "loss" (mean cross-entropy on the judging images' labels) or "error" (the
  // fraction of them it misclassifies).
  std::string judge_by = "distortion";
  std::string metric = "kl";
  int64_t batch_size = 256;
};

// True for the judgements measured against labels ("loss", "error").
bool judged_by_labels(const std::string& judge_by);

// A judge (rdprune/refine.h) of plans on `judging` after `recovery`; batch norm is re-estimated on
// `calibration` when recovery.recalibrate_bn. The unpruned network's outputs on `judging` are
// taken once, here, when judged by distortion. Each judgement leaves the network as it was.
// O(recovery.steps training steps + one pass over `judging`) per plan.
PlanJudge recovery_judge(Network& network, const Dataset& calibration, const Dataset& judging,
                         const Recovery& recovery);

}  // namespace rdprune
