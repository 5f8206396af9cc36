#include "rdprune/refine.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/additivity.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

std::vector<int64_t> kept_counts(const Plan& plan) {
  std::vector<int64_t> kept;
  for (const auto& layer : plan.layers) kept.push_back(layer.kept);
  return kept;
}

// Bounds every layer's kept count to within `factor` of the plan's (and always allows the densest
// level that keeps no more than the plan, so the plan's budget stays reachable).
void trust_region(const CurveSet& curves, const Plan& plan, double factor, RdOptions& options) {
  options.kept_lower.clear();
  options.kept_upper.clear();
  for (size_t i = 0; i < curves.layers.size(); ++i) {
    const LayerCurve& layer = curves.layers[i];
    const double centre = static_cast<double>(plan.layers[i].kept);
    auto lower = static_cast<int64_t>(std::floor(centre / factor));
    const auto below = std::find_if(layer.kept.begin(), layer.kept.end(),
                                    [&](int64_t kept) { return static_cast<double>(kept) <= centre; });
    if (below != layer.kept.end()) lower = std::min(lower, *below);
    options.kept_lower.push_back(lower);
    options.kept_upper.push_back(static_cast<int64_t>(std::ceil(centre * factor)));
  }
}

}  // namespace

PlanSearch::PlanSearch(PlanJudge judge, JudgeInfo info, Sink* sink)
    : judge_(std::move(judge)), info_(std::move(info)), sink_(sink) {}

bool PlanSearch::judge(const std::string& start, const Plan& plan, int64_t pass, double trust,
                       double exchanged) {
  RefineStep step;
  step.start = start;
  step.pass = pass;
  step.trust = trust;
  step.exchanged = exchanged;
  step.recovery_steps = info_.recovery_steps;
  step.judged_by = info_.judged_by;
  NetworkState recovered;
  const bool keep = info_.keep_recovered && info_.recovery_steps > 0;
  step.measured = judge_(plan, keep ? &recovered : nullptr);
  step.sparsity = plan.sparsity_achieved();
  const bool lower = steps_.empty() || step.measured < steps_[current_].measured;
  steps_.push_back(step);
  plans_.push_back(plan);
  note(sink_,
       fmt::format("search: {} pass {}{}{} plan at sparsity {:.4f} measures {} {:.6g}{}", start, pass,
                   trust > 0 ? fmt::format(" (trust x{})", trust) : std::string(),
                   exchanged > 0 ? fmt::format(" (exchange {:g})", exchanged) : std::string(), step.sparsity,
                   judgement_name(step.judged_by, info_.metric), step.measured,
                   info_.recovery_steps > 0 ? fmt::format(" after {} fine-tuning steps", info_.recovery_steps)
                                            : std::string()));
  if (lower) {
    current_ = steps_.size() - 1;
    if (keep) recovered_ = std::move(recovered);
  }
  return lower;
}

bool PlanSearch::seen(const Plan& plan) const {
  const std::vector<int64_t> kept = kept_counts(plan);
  return std::any_of(plans_.begin(), plans_.end(), [&](const Plan& p) { return kept_counts(p) == kept; });
}

std::vector<RefineStep> PlanSearch::finish() {
  std::vector<RefineStep> steps = steps_;
  if (!steps.empty()) steps[current_].chosen = true;
  return steps;
}

int64_t refine_passes(PlanSearch& search, Network& network, const Dataset& calibration,
                      const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                      const CurveOptions& curve_options, const RdOptions& rd, int64_t passes,
                      const RefineCurvesSink& on_curves) {
  if (passes < 0) throw UsageError("refine", "expected a count >= 0");
  if (search.empty()) throw Error("refine: no plan to start from");
  const std::string origin = search.best_step().start;
  constexpr double kTrust[] = {0, 4, 2, 1.25};  // 0: unbounded
  int64_t measured = 0;
  for (int64_t pass = 1; pass <= passes; ++pass) {
    measured = pass;
    const Plan current = search.best();
    CurveOptions around = curve_options;
    around.estimator = "measured";  // curves around a plan are always measured
    around.context_kept = kept_counts(current);
    const CurveSet curves = measure_curves(network, calibration, calibration_description, infos, around);
    if (on_curves) on_curves(pass, curves);
    bool moved = false;
    std::vector<std::vector<int64_t>> tried;  // a smaller region often gives the same plan again
    for (double trust : kTrust) {
      RdOptions bounded = rd;
      if (trust > 0) trust_region(curves, current, trust, bounded);
      Plan candidate;
      try {
        candidate = allocate_rd(curves, bounded);
      } catch (const Error&) {
        continue;  // the region cannot meet the budget
      }
      const std::vector<int64_t> kept = kept_counts(candidate);
      if (kept == kept_counts(current)) break;  // a fixed point of the curves
      if (std::find(tried.begin(), tried.end(), kept) != tried.end() || search.seen(candidate)) continue;
      tried.push_back(kept);
      if (search.judge(origin, candidate, pass, trust)) {
        moved = true;
        break;
      }
    }
    if (!moved) break;  // no plan near the current one judges lower
  }
  return measured;
}

PlanJudge joint_distortion_judge(Network& network, const Dataset& calibration, const CurveOptions& options,
                                 bool batch_statistics) {
  const torch::Tensor reference = reference_outputs(network, calibration, options.batch_size);
  return [&network, &calibration, options, batch_statistics, reference](const Plan& plan, NetworkState*) {
    return joint_distortion(network, calibration, plan, options.metric, options.batch_size, batch_statistics,
                            reference);
  };
}

std::string judgement_name(const std::string& judged_by, const std::string& metric) {
  return judged_by == "distortion" ? metric + " distortion" : judged_by;
}

}  // namespace rdprune
