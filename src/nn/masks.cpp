#include "rdprune/masks.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/channels.h"
#include "rdprune/criterion.h"
#include "rdprune/error.h"

namespace rdprune {

torch::Tensor magnitude_order(const torch::Tensor& weight, const torch::Tensor& mask) {
  torch::NoGradGuard no_grad;
  torch::Tensor key = weight.detach().abs().flatten().to(torch::kFloat64);
  if (mask.defined()) key = key.masked_fill(mask.flatten().logical_not(), -1.0);
  // A stable sort breaks ties by index.
  return std::get<1>(torch::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false));
}

torch::Tensor pruning_order(const Network& network, size_t layer, const torch::Tensor& mask) {
  const PrunableLayer& info = network.layers().at(layer);
  if (network.criterion() != "wanda") return magnitude_order(info.weight, mask);
  torch::NoGradGuard no_grad;
  const int64_t axis = output_axis(info.type);
  const auto shape = info.weight.sizes();
  const int64_t rows = shape[axis];
  // Flat indices and keys as [rows, weights per row]; pruned weights get the key -1.
  const torch::Tensor index =
      torch::arange(info.weight.numel(),
                    torch::TensorOptions().dtype(torch::kInt64).device(info.weight.device()))
          .view(shape)
          .movedim(axis, 0)
          .reshape({rows, -1});
  torch::Tensor key = criterion_scores(network, layer);
  if (mask.defined()) key = key.masked_fill(mask.logical_not(), -1.0);
  key = key.movedim(axis, 0).reshape({rows, -1});
  const auto [sorted, in_row] = torch::sort(key, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  // All pruned weights first; then by position in the row's order (pruned ones lead it), then row:
  // a row with fewer weights left is reached later, so the rows end as equal as whole weights allow.
  const torch::Tensor pruned = sorted.lt(0);
  const torch::Tensor position = torch::arange(key.size(1), index.options()).unsqueeze(0).expand_as(sorted);
  const torch::Tensor row = torch::arange(rows, index.options()).unsqueeze(1);
  const torch::Tensor composite =
      (torch::where(pruned, torch::full_like(position, -1), position) + 1) * rows + row;
  const torch::Tensor order = std::get<1>(torch::sort(composite.flatten(), /*stable=*/true, 0, false));
  return index.gather(1, in_row).flatten().index_select(0, order);
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
  if (plan.granularity == "channel") return apply_channel_plan(network, plan, source);
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
        mask_keeping(pruning_order(network, i, mask), plan.layers[i].kept, layers[i].weight.sizes()));
  }
  for (size_t i = 0; i < layers.size(); ++i) network.set_mask(i, masks[i]);
  network.apply_masks();
}

}  // namespace rdprune
