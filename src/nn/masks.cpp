#include "rdprune/masks.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/error.h"

namespace rdprune {

torch::Tensor magnitude_order(const torch::Tensor& weight, const torch::Tensor& mask) {
  torch::NoGradGuard no_grad;
  torch::Tensor key = weight.detach().abs().flatten().to(torch::kFloat64);
  if (mask.defined()) key = key.masked_fill(mask.flatten().logical_not(), -1.0);
  // A stable sort breaks ties by index.
  return std::get<1>(torch::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false));
}

torch::Tensor mask_keeping(const torch::Tensor& order, int64_t kept, c10::IntArrayRef shape) {
  const int64_t n = order.numel();
  torch::Tensor mask = torch::ones({n}, torch::TensorOptions().dtype(torch::kBool).device(order.device()));
  if (kept < n) mask.index_fill_(0, order.narrow(0, 0, n - kept), false);
  return mask.view(shape);
}

int64_t unpruned_count(const Network& network, size_t layer) {
  const auto& masks = network.masks();
  if (layer < masks.size() && masks[layer].defined()) return masks[layer].sum().item<int64_t>();
  return network.layers()[layer].weight.numel();
}

void apply_plan(Network& network, const Plan& plan, const std::string& source) {
  const auto& layers = network.layers();
  std::vector<LayerInfo> infos;
  for (const auto& layer : layers) {
    LayerInfo info;
    info.name = layer.name;
    info.weights = layer.weight.numel();
    infos.push_back(info);
  }
  check_plan_matches(plan, infos, source);
  std::vector<torch::Tensor> masks;
  for (size_t i = 0; i < layers.size(); ++i) {
    const int64_t unpruned = unpruned_count(network, i);
    if (plan.layers[i].kept > unpruned) {
      throw Error(fmt::format("{}: layer {} keeps {} weights but only {} are unpruned; masks only grow",
                              source, layers[i].name, plan.layers[i].kept, unpruned));
    }
    const torch::Tensor mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
    masks.push_back(
        mask_keeping(magnitude_order(layers[i].weight, mask), plan.layers[i].kept, layers[i].weight.sizes()));
  }
  for (size_t i = 0; i < layers.size(); ++i) network.set_mask(i, masks[i]);
  network.apply_masks();
}

}  // namespace rdprune
