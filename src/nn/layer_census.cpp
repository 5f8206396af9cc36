// Layer census: one forward pass watched for the uses of every prunable weight (weight_uses.h);
// each use's output size gives the multiply-accumulates per weight.
#include <string>

#include "network_impl.h"
#include "rdprune/error.h"
#include "rdprune/text.h"
#include "weight_uses.h"

namespace rdprune {
namespace {

// Multiply-accumulates per weight per sample of one use: each weight meets every position of its
// output feature (or, transposed, of its input feature) once.
double use_flops_per_weight(const WeightUse& use, int64_t batch) {
  const torch::Tensor* x = use.activation();
  const bool convolution = use.convolution();
  // A matrix product: the positions (tokens) of its input, one per row of features.
  if (!convolution && x != nullptr) {
    return static_cast<double>(x->numel()) / static_cast<double>(batch * std::max<int64_t>(1, x->size(-1)));
  }
  const torch::Tensor& side = use.transposed_convolution() && x != nullptr ? *x : use.output;
  const int64_t features = convolution ? side.size(1) : side.size(-1);
  return static_cast<double>(side.numel()) / static_cast<double>(batch * std::max<int64_t>(1, features));
}

// A forward pass whose failure inside LibTorch (a shape the model cannot take) is an Error naming
// the input, in one line; a TorchScript model's own errors name its file already.
torch::Tensor forward_or_explain(Network& network, const torch::Tensor& input) {
  try {
    return network.forward(input);
  } catch (const c10::Error& e) {
    const std::string reason = e.what_without_backtrace();
    throw Error("forward pass failed on input " + format_shape(input.sizes().vec()) + " (" +
                reason.substr(0, reason.find('\n')) + ")");
  }
}

}  // namespace

std::vector<LayerInfo> layer_census(Network& network, const std::vector<int64_t>& input_shape) {
  const auto& layers = network.layers();
  std::vector<int64_t> calls(layers.size(), 0);
  std::vector<double> flops_per_weight(layers.size(), 0.0);
  if (!input_shape.empty()) {
    // With gradients on, PyTorch's transformer layers take their unfused path, whose linear calls
    // show each projection's use; the fused kernels read the same weights.
    torch::AutoGradMode enable_grad(true);
    network.set_training(false);
    std::vector<int64_t> shape = {1};
    shape.insert(shape.end(), input_shape.begin(), input_shape.end());
    const auto device = layers.empty() ? torch::Device(torch::kCPU) : layers[0].weight.device();
    const torch::Tensor input = torch::zeros(shape, torch::TensorOptions().device(device));
    const WeightUseVisitor count = [&](const std::vector<size_t>& used, const WeightUse& use) {
      for (size_t i : used) {
        calls[i] += 1;
        // A lookup or an addition multiplies nothing.
        if (!is_embedding_type(layers[i].type)) flops_per_weight[i] += use_flops_per_weight(use, /*batch=*/1);
      }
    };
    observe_weight_uses(layers, count, [&] { forward_or_explain(network, input); });
  }
  std::vector<LayerInfo> infos;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& layer = layers[i];
    LayerInfo info;
    info.name = layer.name;
    info.type = layer.type;
    info.shape = layer.weight.sizes().vec();
    info.weights = layer.weight.numel();
    info.calls = input_shape.empty() ? 0 : calls[i];
    info.flops_per_weight = input_shape.empty() ? -1.0 : flops_per_weight[i];
    const auto& mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
    const int64_t pruned = mask.defined() ? mask.numel() - mask.sum().item<int64_t>()
                                          : (layer.weight == 0).sum().item<int64_t>();
    info.sparsity = info.weights > 0 ? static_cast<double>(pruned) / info.weights : 0.0;
    infos.push_back(std::move(info));
  }
  return infos;
}

void check_logits(Network& network, const std::vector<int64_t>& input_shape, int64_t num_classes) {
  torch::NoGradGuard no_grad;
  network.set_training(false);
  std::vector<int64_t> shape = {2};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  const auto device =
      network.layers().empty() ? torch::Device(torch::kCPU) : network.layers()[0].weight.device();
  const torch::Tensor output =
      forward_or_explain(network, torch::zeros(shape, torch::TensorOptions().device(device)));
  if (output.dim() != 2 || output.size(0) != 2) {
    throw Error("model output has shape " + std::string(c10::str(output.sizes())) +
                ", expected [batch, classes] logits");
  }
  if (num_classes > 0 && output.size(1) != num_classes) {
    throw Error("model outputs " + std::to_string(output.size(1)) + " classes but the dataset has " +
                std::to_string(num_classes));
  }
}

}  // namespace rdprune
