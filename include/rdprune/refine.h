// A local search for the plan with the lowest judgement (docs/design.md, "Refinement"). Per-layer
// curves are measured with every other layer dense, yet a plan prunes them all together, and the
// distortions of layers pruned together do not add up exactly. Refinement re-measures every curve
// with the other layers pruned as the current plan says, solves the DP again, and moves only to a
// plan that judges lower; when the unbounded solution does not, it solves again with every layer
// held within a shrinking factor of its current kept count (a trust region).
// rd judges plans by their joint distortion on the calibration set (the objective its curves
// estimate); select by what its judge says (rdprune/recovery.h). The search is told how to judge
// by a callable, so it knows nothing of training.
#pragma once

#include "rdprune/layering.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "rdprune/allocate.h"
#include "rdprune/curves.h"
#include "rdprune/dataset.h"
#include "rdprune/distortion.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

struct RefineStep {
  // The plan's origin: "rd", an allocator's name; an exchange "<start> <from>><to>", naming the
  // layers that gave and took weights
  std::string start;
  // 0: a starting plan as it is; k: solved on the k-th curves; an exchange: the curve passes run
  // plus its round of exchanges
  int64_t pass = 0;
  double trust = 0;            // the factor each layer's kept count could move by (0: unbounded)
  double exchanged = 0;        // an exchange: the share of the giving layer's kept weights moved (0: none)
  double measured = 0;         // the plan's judgement: lower is better
  int64_t recovery_steps = 0;  // fine-tuning steps before the judgement (0: as pruned)
  std::string judged_by = "distortion";  // "distortion", "loss" or "error" (1 - top-1)
  double sparsity = 0;                   // the plan's weight sparsity
  bool chosen = false;
};

// How a plan is judged: lower is better. The network must be left as it was; `recovered`, when
// not null, receives the network the judgement fine-tuned (judges that fine-tune only).
using PlanJudge = std::function<double(const Plan& plan, NetworkState* recovered)>;

// What every step of a search records about its judge.
struct JudgeInfo {
  std::string judged_by = "distortion";
  int64_t recovery_steps = 0;
  std::string metric = "kl";    // the distortion metric, for progress lines
  bool keep_recovered = false;  // keep the chosen plan's recovered network
};

// The plans a search has judged, and the lowest of them (the earliest on ties).
class PlanSearch {
 public:
  PlanSearch(PlanJudge judge, JudgeInfo info, Sink* sink);
  // Judges `plan` and makes it the current one when it judges lower; true when it did.
  bool judge(const std::string& start, const Plan& plan, int64_t pass = 0, double trust = 0,
             double exchanged = 0);
  // Whether a plan with the same kept counts was judged already.
  bool seen(const Plan& plan) const;
  bool empty() const { return steps_.empty(); }
  const Plan& best() const { return plans_.at(current_); }
  const RefineStep& best_step() const { return steps_.at(current_); }
  size_t best_index() const { return current_; }
  // The steps with the lowest marked chosen, and the recovered network of the lowest when kept.
  std::vector<RefineStep> finish();
  std::optional<NetworkState> take_recovered() { return std::move(recovered_); }

 private:
  PlanJudge judge_;
  JudgeInfo info_;
  Sink* sink_;
  std::vector<RefineStep> steps_;
  std::vector<Plan> plans_;
  size_t current_ = 0;
  std::optional<NetworkState> recovered_;
};

using RefineCurvesSink = std::function<void(int64_t pass, const CurveSet&)>;

// Up to `passes` times: measures curves around the search's best plan, allocates under `rd`
// (unbounded, then within factors 4, 2 and 1.25 of each layer's kept count) and moves to the
// first plan that judges lower; stops early when none does. Returns the passes that measured
// curves. `on_curves` sees each pass's curves. The search must hold a plan.
// O(passes * (curve measurement + 4 judgements)).
int64_t refine_passes(PlanSearch& search, Network& network, const Dataset& calibration,
                      const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                      const CurveOptions& curve_options, const RdOptions& rd, int64_t passes,
                      const RefineCurvesSink& on_curves = {});

// The judge of rd's refinement: the plan's joint distortion on `calibration` as pruned, in the
// curves' metric, with batch statistics when `batch_statistics` (batch norm will be re-estimated
// after pruning). The reference outputs are computed once, here.
PlanJudge joint_distortion_judge(Network& network, const Dataset& calibration, const CurveOptions& options,
                                 bool batch_statistics);

// What a judgement by `judged_by` is called in progress lines: "<metric> distortion", "loss" or
// "error".
std::string judgement_name(const std::string& judged_by, const std::string& metric);

}  // namespace rdprune
