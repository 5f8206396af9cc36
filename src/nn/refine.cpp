#include "rdprune/refine.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/additivity.h"
#include "rdprune/error.h"
#include "rdprune/masks.h"
#include "rdprune/train.h"

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

// The plan `make` builds when it meets the budget and keeps rd's constraints; nullopt otherwise.
template <typename Make>
std::optional<Plan> honoured(const Make& make, const std::vector<LayerInfo>& infos, const RdOptions& rd) {
  try {
    Plan plan = make();
    if (honours(plan, infos, rd)) return plan;
  } catch (const Error&) {
    // the constraints cannot meet the budget this way
  }
  return std::nullopt;
}

}  // namespace

bool judged_by_labels(const std::string& judge_by) {
  return judge_by == "loss" || judge_by == "error";
}

bool judged_by_recovery(const Recovery& recovery) {
  return recovery.steps > 0 || recovery.judge != nullptr;
}

torch::Tensor judging_reference(Network& network, const Dataset& calibration, const Recovery& recovery,
                                int64_t batch_size) {
  if (!judged_by_recovery(recovery)) return reference_outputs(network, calibration, batch_size);
  if (judged_by_labels(recovery.judge_by)) return {};
  return reference_outputs(network, recovery.judge != nullptr ? *recovery.judge : calibration, batch_size);
}

double recovered_distortion(Network& network, const Dataset& calibration, const Plan& plan,
                            const std::string& metric, int64_t batch_size, const torch::Tensor& reference,
                            const Recovery& recovery, NetworkState* recovered) {
  if (recovery.steps < 0) throw Error("recovery: a negative count of fine-tuning steps");
  if (recovery.steps > 0 && recovery.data == nullptr) throw Error("recovery: no fine-tuning data");
  if (!judged_by_labels(recovery.judge_by) && recovery.judge_by != "distortion")
    throw UsageError("--judge-by: expected distortion, loss or error, got '" + recovery.judge_by + "'");
  const StateGuard saved(network);
  apply_plan(network, plan, "recovery plan");
  if (recovery.recalibrate_bn) recalibrate_batch_norm(network, calibration);
  if (recovery.steps > 0) {
    TrainOptions train = recovery.train;
    train.steps = recovery.steps;
    train.progress = false;
    rdprune::train(network, *recovery.data, train);
  }
  network.set_training(false);
  if (recovered != nullptr) *recovered = snapshot(network);
  torch::NoGradGuard no_grad;
  const Dataset& judge = recovery.judge != nullptr ? *recovery.judge : calibration;
  if (recovery.judge_by == "loss") return evaluate(network, judge, batch_size).loss;
  if (recovery.judge_by == "error") return 1.0 - evaluate(network, judge, batch_size).top1;
  return output_distortion(network_outputs(network, judge, batch_size), reference, metric);
}

double judge_plan(Network& network, const Dataset& calibration, const Plan& plan,
                  const CurveOptions& curve_options, const torch::Tensor& reference, const Recovery& recovery,
                  NetworkState* recovered) {
  if (judged_by_recovery(recovery)) {
    return recovered_distortion(network, calibration, plan, curve_options.metric, curve_options.batch_size,
                                reference, recovery, recovered);
  }
  return joint_distortion(network, calibration, plan, curve_options.metric, curve_options.batch_size,
                          curve_options.recalibrate_bn, reference);
}

std::string judgement_name(const std::string& judged_by, const std::string& metric) {
  return judged_by == "distortion" ? metric + " distortion" : judged_by;
}

std::vector<size_t> lowest_first(const std::vector<RefineStep>& steps) {
  std::vector<size_t> order(steps.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return steps[x].measured < steps[y].measured; });
  return order;
}

std::optional<Plan> blend_of(const Plan& a, const Plan& b, const std::vector<LayerInfo>& infos,
                             const RdOptions& rd) {
  return honoured([&] { return blend_plans(a, b, 0.5, infos, rd); }, infos, rd);
}

std::optional<Plan> rule_plan(const std::string& name, const std::vector<RefineStart>& starts,
                              const std::vector<LayerInfo>& infos, const RdOptions& rd) {
  for (const auto& start : starts) {
    if (start.name == name) return start.plan;
  }
  for (const auto& a : starts) {
    for (const auto& b : starts) {
      if (&a != &b && a.name + "+" + b.name == name) return blend_of(a.plan, b.plan, infos, rd);
    }
  }
  return std::nullopt;
}

bool rule_uses_rd(const std::string& name) {
  const auto ends_with = [&](const std::string& tail) {
    return name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  return name == "rd" || name.rfind("rd+", 0) == 0 || ends_with("+rd");
}

RefineResult refine_rd(Network& network, const Dataset& calibration,
                       const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                       const CurveOptions& curve_options, const RdOptions& rd,
                       const std::vector<RefineStart>& starts, int64_t passes,
                       const RefineCurvesSink& on_curves, const Recovery& recovery, int64_t blends,
                       int64_t exchanges) {
  if (passes < 0) throw UsageError("--refine: expected a count >= 0");
  if (exchanges < 0) throw UsageError("--exchanges: expected a count >= 0");
  if (starts.empty()) throw Error("refine: no plan to start from");
  if (blends < 0) throw UsageError("--blends: expected a count >= 0");
  RefineResult result;
  std::vector<Plan> plans;  // parallel to result.steps
  // The network's outputs as it is, before any plan prunes it, on the images plans are judged on.
  const bool recovering = recovery.steps > 0;
  const bool judged = judged_by_recovery(recovery);  // else by the joint distortion on calibration
  // (Judged by the loss or the error, recovered networks are measured against labels instead.)
  const torch::Tensor reference = judging_reference(network, calibration, recovery, curve_options.batch_size);
  size_t current = 0;                           // the lowest-measuring plan so far (the earliest on ties)
  std::optional<NetworkState> current_network;  // its recovered network, with keep_recovered
  // Measures a plan and makes it the current one when it measures lower; true when it did.
  auto measure = [&](const std::string& start, const Plan& candidate, int64_t pass, double trust,
                     double exchanged = 0) {
    RefineStep step;
    step.start = start;
    step.pass = pass;
    step.trust = trust;
    step.exchanged = exchanged;
    step.recovery_steps = recovery.steps;
    if (judged) step.judged_by = recovery.judge_by;
    NetworkState recovered;
    step.measured = judge_plan(network, calibration, candidate, curve_options, reference, recovery,
                               recovery.keep_recovered && recovering ? &recovered : nullptr);
    step.sparsity = candidate.sparsity_achieved();
    const bool lower = result.steps.empty() || step.measured < result.steps[current].measured;
    result.steps.push_back(step);
    plans.push_back(candidate);
    if (curve_options.progress) {
      std::cerr << fmt::format(
          "refine: {} pass {}{}{} plan at sparsity {:.4f} measures {} {:.6g}{}\n", start, pass,
          trust > 0 ? fmt::format(" (trust x{})", trust) : std::string(),
          exchanged > 0 ? fmt::format(" (exchange {:g})", exchanged) : std::string(), step.sparsity,
          judgement_name(step.judged_by, curve_options.metric), step.measured,
          recovering ? fmt::format(" after {} fine-tuning steps", recovery.steps) : std::string());
    }
    if (lower) {
      current = result.steps.size() - 1;
      if (recovery.keep_recovered && recovering) current_network = std::move(recovered);
    }
    return lower;
  };
  // Whether a plan with the same kept counts was measured already.
  auto seen = [&](const Plan& candidate) {
    const std::vector<int64_t> kept = kept_counts(candidate);
    return std::any_of(plans.begin(), plans.end(),
                       [&](const Plan& plan) { return kept_counts(plan) == kept; });
  };
  for (const auto& start : starts) measure(start.name, start.plan, 0, 0);
  // Blends: the best start halfway (in log density) towards each of the next-best `blends` starts.
  // Judged after recovery, good starts often measure close together, and a plan between two of them
  // is a move the pruned network's curves do not propose (docs/results.md).
  const std::vector<size_t> order = lowest_first(result.steps);
  const size_t best = order.front();
  for (size_t k = 1; k < order.size() && static_cast<int64_t>(k) <= blends; ++k) {
    const std::optional<Plan> blend = blend_of(plans[best], plans[order[k]], infos, rd);
    if (!blend || seen(*blend)) continue;
    const std::string name = result.steps[best].start + "+" + result.steps[order[k]].start;
    measure(name, *blend, 0, 0);
  }
  const std::string origin = result.steps[current].start;
  constexpr double kTrust[] = {0, 4, 2, 1.25};  // 0: unbounded
  int64_t last_pass = 0;                        // the passes that measured curves
  for (int64_t pass = 1; pass <= passes; ++pass) {
    last_pass = pass;
    CurveOptions around = curve_options;
    around.estimator = "measured";  // curves around a plan are always measured
    around.context_kept = kept_counts(plans[current]);
    const CurveSet curves = measure_curves(network, calibration, calibration_description, infos, around);
    if (on_curves) on_curves(origin, pass, curves);
    bool moved = false;
    std::vector<std::vector<int64_t>> tried;  // a smaller region often gives the same plan again
    for (double trust : kTrust) {
      RdOptions bounded = rd;
      if (trust > 0) trust_region(curves, plans[current], trust, bounded);
      Plan candidate;
      try {
        candidate = allocate_rd(curves, bounded);
      } catch (const Error&) {
        continue;  // the region cannot meet the budget
      }
      const std::vector<int64_t> kept = kept_counts(candidate);
      if (kept == kept_counts(plans[current])) break;  // a fixed point of the curves
      if (std::find(tried.begin(), tried.end(), kept) != tried.end()) continue;
      tried.push_back(kept);
      if (measure(origin, candidate, pass, trust)) {
        moved = true;
        break;
      }
    }
    if (!moved) break;  // no plan near the current one measures lower
  }
  // Exchanges: every ordered pair of layers, one giving up a share of its kept weights and the
  // other spending what they cost, from the lowest plan so far. Judged after recovery, they find
  // moves the pruned network's curves do not propose (docs/results.md, "Exchanges").
  double fraction = kExchangeFraction;
  for (int64_t round = 0; round < exchanges; ++round) {
    const size_t base = current;
    const Plan from = plans[base];
    for (size_t i = 0; i < infos.size(); ++i) {
      for (size_t j = 0; j < infos.size(); ++j) {
        if (i == j) continue;
        const std::optional<Plan> candidate =
            honoured([&] { return exchange_plan(from, i, j, fraction, infos, rd); }, infos, rd);
        if (!candidate || seen(*candidate)) continue;
        measure(fmt::format("{} {}>{}", origin, infos[i].name, infos[j].name), *candidate,
                last_pass + 1 + round, 0, fraction);
      }
    }
    if (current == base) fraction /= 2;  // nothing lower at this step: a finer one
  }
  result.steps[current].chosen = true;
  result.plan = plans[current];
  result.recovered = std::move(current_network);
  return result;
}

}  // namespace rdprune
