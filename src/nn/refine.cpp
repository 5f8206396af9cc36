#include "rdprune/refine.h"

#include <iostream>

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

}  // namespace

RefineResult refine_rd(Network& network, const Dataset& calibration,
                       const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                       const CurveOptions& curve_options, const RdOptions& rd, const Plan& plan,
                       int64_t passes, const std::function<void(int64_t, const CurveSet&)>& on_curves) {
  if (passes < 0) throw UsageError("--refine: expected a count >= 0");
  std::vector<Plan> plans = {plan};
  RefineResult result;
  torch::Tensor reference;  // the network's outputs as it is, before any pass prunes it
  {
    torch::NoGradGuard no_grad;
    network.set_training(false);
    reference = network_outputs(network, calibration, curve_options.batch_size);
  }
  auto measure = [&](const Plan& candidate, int64_t pass) {
    RefineStep step;
    step.pass = pass;
    step.measured = joint_distortion(network, calibration, candidate, curve_options.metric,
                                     curve_options.batch_size, curve_options.recalibrate_bn, reference);
    step.sparsity = candidate.sparsity_achieved();
    result.steps.push_back(step);
    if (curve_options.progress) {
      std::cerr << fmt::format("refine: pass {} plan at sparsity {:.4f} measures {} distortion {:.6g}\n",
                               pass, step.sparsity, curve_options.metric, step.measured);
    }
  };
  measure(plan, 0);
  for (int64_t pass = 1; pass <= passes; ++pass) {
    CurveOptions around = curve_options;
    around.estimator = "measured";  // curves around a plan are always measured
    around.context_kept = kept_counts(plans.back());
    const CurveSet curves = measure_curves(network, calibration, calibration_description, infos, around);
    if (on_curves) on_curves(pass, curves);
    plans.push_back(allocate_rd(curves, rd));
    measure(plans.back(), pass);
    if (kept_counts(plans.back()) == kept_counts(plans[plans.size() - 2])) break;  // a fixed point
  }
  size_t best = 0;
  for (size_t i = 1; i < result.steps.size(); ++i) {
    if (result.steps[i].measured < result.steps[best].measured) best = i;
  }
  result.steps[best].chosen = true;
  result.plan = plans[best];
  return result;
}

}  // namespace rdprune
