// Second-order Taylor estimates of the curves from one gradient pass (--estimator taylor).
//
// Pruning a set P of weights moves them by -w_j. To second order the distortion is
// 1/2 dw^T H dw with H the Hessian of the distortion at the unpruned weights, whose gradient is 0
// there. Keeping only H's diagonal, d(P) = sum_{j in P} c_j w_j^2, so every level of a layer costs
// one prefix sum along its magnitude order and no forward pass at all.
//  - kl: H is the Fisher information of the model's predictive distribution, so
//    c_j = 1/2 E_x E_{y ~ p(.|x)} (d log p(y|x) / d w_j)^2, estimated with one y drawn per sample.
//  - mse / worst: the Gauss-Newton matrix of the mean squared output error, J^T J / K, so
//    c_j = E_x |d f(x) / d w_j|^2 / K, estimated with one Gaussian projection v per sample
//    (E_v (v^T J_j)^2 = |J_j|^2). worst uses the mse estimate.
// Per-sample gradients need one backward pass per calibration sample (batch 1).
#include <torch/torch.h>

#include "rdprune/distortion.h"
#include "rdprune/error.h"
#include "rdprune/masks.h"
#include "rdprune/sample_order.h"

namespace rdprune {

std::vector<torch::Tensor> taylor_coefficients(Network& network, const Dataset& calibration,
                                               const std::string& metric, uint64_t seed) {
  torch::AutoGradMode enable_grad(true);
  const auto& layers = network.layers();
  std::vector<torch::Tensor> weights;
  std::vector<bool> required;
  // Gradients are taken with respect to the parameters (a q, k or v block is a view of one).
  for (const auto& layer : layers) {
    weights.push_back(layer.parameter);
    required.push_back(layer.parameter.requires_grad());
    layer.parameter.requires_grad_(true);
  }
  std::vector<torch::Tensor> sums;
  for (const auto& layer : layers) sums.push_back(torch::zeros_like(layer.weight, torch::kFloat64));
  auto generator = at::detail::createCPUGenerator(derive_seed(seed, 0x7a7));
  const torch::Device device = weights[0].device();
  network.set_training(false);
  try {
    for (int64_t n = 0; n < calibration.size(); ++n) {
      const torch::Tensor x = calibration.batch(torch::tensor({n}, torch::kInt64)).images.to(device);
      const torch::Tensor out = network.forward(x).flatten(1).to(torch::kFloat32);
      torch::Tensor scalar;
      if (metric == "kl") {
        const torch::Tensor log_p = torch::log_softmax(out, 1);
        const torch::Tensor y =
            at::multinomial(log_p.detach().exp().cpu(), 1, /*replacement=*/true, generator).to(device);
        scalar = log_p.gather(1, y).sum();
      } else {
        const torch::Tensor v = at::normal(0.0, 1.0, out.sizes(), generator).to(device);
        scalar = (out * v).sum() / std::sqrt(static_cast<double>(out.size(1)));
      }
      const auto grads = torch::autograd::grad({scalar}, weights);
      for (size_t i = 0; i < grads.size(); ++i)
        sums[i] += layers[i].rows_of(grads[i].detach()).to(torch::kFloat64).pow(2);
    }
  } catch (...) {
    for (size_t i = 0; i < weights.size(); ++i) weights[i].requires_grad_(required[i]);
    throw;
  }
  for (size_t i = 0; i < weights.size(); ++i) weights[i].requires_grad_(required[i]);
  const double scale = (metric == "kl" ? 0.5 : 1.0) / static_cast<double>(calibration.size());
  for (auto& sum : sums) sum = (sum * scale).cpu();
  return sums;
}

LayerCurve taylor_curve(const PrunableLayer& layer, const torch::Tensor& pruning_order,
                        const torch::Tensor& coefficients, const std::vector<double>& levels,
                        int64_t unpruned) {
  LayerCurve curve;
  curve.name = layer.name;
  curve.weights = layer.weight.numel();
  const torch::Tensor weight = layer.weight.detach().cpu().to(torch::kFloat64).flatten();
  const torch::Tensor order = pruning_order.cpu();
  // Cost of pruning each weight, in pruning order; already pruned weights are zero and cost 0.
  const torch::Tensor cost = (weight.pow(2) * coefficients.flatten()).index_select(0, order);
  const torch::Tensor prefix = torch::cat({torch::zeros({1}, torch::kFloat64), cost.cumsum(0)});
  const double base = prefix[curve.weights - unpruned].item<double>();
  for (size_t k = 0; k < levels.size(); ++k) {
    const int64_t kept = k == 0 ? unpruned : kept_at(levels[k], curve.weights);
    curve.sparsity.push_back(levels[k]);
    curve.kept.push_back(kept);
    curve.distortion.push_back(std::max(0.0, prefix[curve.weights - kept].item<double>() - base));
  }
  return curve;
}

}  // namespace rdprune
