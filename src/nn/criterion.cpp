#include "rdprune/criterion.h"

#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/text.h"
#include "weight_uses.h"

namespace rdprune {
namespace {

// Per input feature, the sum over the batch of squared norms: matrix products take features on the
// last axis, convolutions on axis 1.
torch::Tensor squared_feature_sums(const WeightUse& use, const torch::Tensor& x) {
  const torch::Tensor v = x.detach().to(torch::kFloat64);
  if (!use.convolution()) return v.pow(2).reshape({-1, v.size(-1)}).sum(0);
  return v.pow(2).transpose(0, 1).reshape({v.size(1), -1}).sum(1);
}

// Input-feature norms [features] shaped to broadcast against `layer`'s weight.
torch::Tensor broadcast_to_weight(const PrunableLayer& layer, const torch::Tensor& norms) {
  const auto& w = layer.weight;
  std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
  if (layer.type == "linear_t" || layer.type.rfind("conv_transpose", 0) == 0) {
    shape[0] = w.size(0);  // [in, out] or [in, out / groups, ...]
    return norms.reshape(shape);
  }
  if (layer.type.rfind("conv", 0) != 0) {
    shape[1] = w.size(1);
    return norms.reshape(shape);
  }
  // [out, in / groups, ...]: output row r reads the channels of its group.
  const int64_t per_group = w.size(1);
  const int64_t groups = norms.numel() / per_group;
  const torch::Tensor by_group =
      norms.reshape({groups, 1, per_group}).expand({groups, w.size(0) / groups, per_group});
  shape[0] = w.size(0);
  shape[1] = per_group;
  return by_group.reshape(shape);
}

}  // namespace

const std::vector<std::string>& criterion_names() {
  static const std::vector<std::string> names = {"magnitude", "wanda"};
  return names;
}

void check_criterion(const std::string& name) {
  require_one_of("criterion", name, criterion_names(), "criterion");
}

int64_t output_axis(const std::string& type) {
  return type == "linear_t" || type.rfind("conv_transpose", 0) == 0 ? 1 : 0;
}

std::vector<torch::Tensor> input_feature_norms(Network& network, const Dataset& data, int64_t batch_size) {
  const auto& layers = network.layers();
  std::vector<torch::Tensor> sums(layers.size());
  // With gradients on, PyTorch's transformer layers take their unfused path, whose calls show each
  // projection's inputs (the fused kernels read the same weights but show none).
  torch::AutoGradMode enable_grad(true);
  network.set_training(false);
  const auto device = layers.empty() ? torch::Device(torch::kCPU) : layers[0].weight.device();
  const WeightUseVisitor visit = [&](const std::vector<size_t>& used, const WeightUse& use) {
    const torch::Tensor* x = use.activation();
    if (x == nullptr) return;
    const torch::Tensor sum = squared_feature_sums(use, *x);
    for (size_t i : used) {
      if (is_embedding_type(layers[i].type)) continue;
      sums[i] = sums[i].defined() && sums[i].sizes() == sum.sizes() ? sums[i] + sum : sum;
    }
  };
  observe_weight_uses(layers, visit, [&] {
    for (int64_t begin = 0; begin < data.size(); begin += batch_size) {
      const int64_t count = std::min(batch_size, data.size() - begin);
      network.forward(data.batch(torch::arange(begin, begin + count, torch::kInt64)).images.to(device));
    }
  });
  std::vector<torch::Tensor> norms;
  for (size_t i = 0; i < layers.size(); ++i) {
    // An embedding reads no input features: its scores are its magnitudes.
    if (is_embedding_type(layers[i].type)) {
      norms.push_back(torch::ones({1}, layers[i].weight.options()));
      continue;
    }
    if (!sums[i].defined())
      throw Error("wanda: layer " + layers[i].name + " was not used on the calibration images");
    const torch::Tensor rms = (sums[i] / static_cast<double>(std::max<int64_t>(1, data.size()))).sqrt();
    try {
      norms.push_back(broadcast_to_weight(layers[i], rms.to(layers[i].weight.device())));
    } catch (const c10::Error&) {
      throw Error("wanda: layer " + layers[i].name + " reads " + std::to_string(rms.numel()) +
                  " input features, which do not fit its weight " +
                  format_shape(layers[i].weight.sizes().vec()));
    }
  }
  return norms;
}

torch::Tensor wanda_scores(const PrunableLayer& layer, const torch::Tensor& input_norms) {
  return layer.weight.detach().abs().to(torch::kFloat64) * input_norms.to(torch::kFloat64);
}

torch::Tensor criterion_scores(const Network& network, size_t layer) {
  if (network.criterion() == "wanda")
    return wanda_scores(network.layers()[layer], network.input_norms().at(layer));
  return network.layers()[layer].weight.detach().abs().to(torch::kFloat64);
}

double outlier_ratio(const torch::Tensor& scores, double threshold) {
  if (scores.numel() == 0) return 0.0;
  const torch::Tensor s = scores.to(torch::kFloat64);
  return (s > s.mean() * threshold).sum().item<double>() / static_cast<double>(s.numel());
}

std::vector<double> weight_spectrum(const PrunableLayer& layer) {
  torch::NoGradGuard no_grad;
  torch::Tensor w = layer.weight.detach().to(torch::kCPU, torch::kFloat64);
  if (is_embedding_type(layer.type)) {
    w = w.reshape({-1, w.size(-1)});  // [entries, features]
  } else if (w.dim() > 2) {
    w = w.flatten(2).permute({2, 0, 1});  // [positions, out, in]: one matrix each
  }
  const torch::Tensor eigenvalues = torch::linalg_svdvals(w).flatten().pow(2).contiguous();
  return {eigenvalues.data_ptr<double>(), eigenvalues.data_ptr<double>() + eigenvalues.numel()};
}

}  // namespace rdprune
