#include "rdprune/additivity.h"

#include <random>

#include <torch/torch.h>

#include "rdprune/allocate.h"
#include "rdprune/distortion.h"
#include "rdprune/error.h"
#include "rdprune/masks.h"

namespace rdprune {
namespace {

double predicted_sum(const CurveSet& curves, const Plan& plan) {
  double sum = 0;
  for (size_t i = 0; i < curves.layers.size(); ++i) {
    const auto& layer = curves.layers[i];
    const auto at = std::find(layer.kept.begin(), layer.kept.end(), plan.layers[i].kept);
    if (at == layer.kept.end())
      throw Error("additivity: plan level of " + layer.name + " is not on its curve");
    sum += layer.distortion[static_cast<size_t>(at - layer.kept.begin())];
  }
  return sum;
}

}  // namespace

double joint_distortion(Network& network, const Dataset& calibration, const Plan& plan,
                        const std::string& metric, int64_t batch_size, bool batch_statistics,
                        const torch::Tensor& reference) {
  const torch::Tensor dense =
      reference.defined() ? reference : reference_outputs(network, calibration, batch_size);
  torch::NoGradGuard no_grad;
  const StateGuard saved(network);
  apply_plan(network, plan, "additivity plan");
  network.set_training(batch_statistics);
  return output_distortion(network_outputs(network, calibration, batch_size), dense, metric);
}

std::vector<AdditivityPoint> additivity_study(Network& network, const Dataset& calibration,
                                              const CurveSet& curves, const std::vector<double>& sparsities,
                                              int64_t random_count, uint64_t seed, int64_t batch_size) {
  const torch::Tensor reference = reference_outputs(network, calibration, batch_size);
  auto measured = [&](const Plan& plan) {
    return joint_distortion(network, calibration, plan, curves.metric, batch_size, curves.bn_recalibrated,
                            reference);
  };
  std::vector<AdditivityPoint> points;
  for (double sparsity : sparsities) {
    RdOptions options;
    options.sparsity_target = sparsity;
    const Plan plan = allocate_rd(curves, options);
    points.push_back({"rd", plan.sparsity_achieved(), predicted_sum(curves, plan), measured(plan)});
  }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> level(0.2, 0.98);
  std::normal_distribution<double> spread(0.0, 0.1);
  for (int64_t r = 0; r < random_count; ++r) {
    // A random global sparsity, each layer scattered around it, snapped to a curve level.
    const double centre = level(rng);
    Plan plan;
    plan.method = "random";
    for (const auto& layer : curves.layers) {
      const double wanted = std::clamp(centre + spread(rng), 0.0, 0.99);
      size_t best = 0;
      for (size_t k = 0; k < layer.sparsity.size(); ++k) {
        if (layer.kept[k] == 0) continue;
        if (std::abs(layer.sparsity[k] - wanted) < std::abs(layer.sparsity[best] - wanted)) best = k;
      }
      plan.layers.push_back({layer.name, layer.weights, layer.kept[best], layer.flops_per_weight});
    }
    points.push_back({"random", plan.sparsity_achieved(), predicted_sum(curves, plan), measured(plan)});
  }
  return points;
}

}  // namespace rdprune
