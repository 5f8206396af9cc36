#include "rdprune/magnitude_baselines.h"

#include <limits>

#include <torch/torch.h>

#include "rdprune/criterion.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

// Per-weight ranking score of one layer (flattened, float64): lower is pruned first. Ranked on the
// network's criterion scores (|w| for magnitude).
torch::Tensor layer_scores(const std::string& method, const Network& network, size_t layer,
                           const torch::Tensor& mask) {
  const torch::Tensor w = criterion_scores(network, layer).flatten().to(torch::kCPU);
  torch::Tensor score;
  if (method == "global") {
    score = w;
  } else {
    const torch::Tensor squared = w.pow(2);
    const auto [sorted, order] = torch::sort(squared, /*stable=*/true, /*dim=*/0, /*descending=*/false);
    const torch::Tensor suffix = sorted.flip(0).cumsum(0).flip(0);
    const torch::Tensor sorted_score = torch::where(suffix > 0, sorted / suffix, torch::zeros_like(sorted));
    score = torch::empty_like(sorted_score).scatter_(0, order, sorted_score);
  }
  if (mask.defined()) score.masked_fill_(mask.flatten().cpu().logical_not(), -1.0);
  return score;
}

}  // namespace

Plan allocate_magnitude_baseline(const std::string& method, Network& network,
                                 const std::vector<LayerInfo>& infos, const BaselineOptions& options) {
  check_sparsity_target(options.sparsity_target, "sparsity_target");
  if (method != "global" && method != "lamp")
    throw UsageError("method", "'" + method + "' is not global or lamp");
  const auto& layers = network.layers();
  if (layers.empty()) throw Error(method + ": the model has no prunable layers");
  check_keep_dense(options.keep_dense, names_of(infos), "the model");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> scores;
  std::vector<torch::Tensor> owners;
  std::vector<torch::Tensor> costs;
  double total_cost = 0;
  int64_t total_weights = 0;
  double dense_flops = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const torch::Tensor mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
    torch::Tensor score;
    if (is_kept_dense(options.keep_dense, infos[i].name)) {
      // Outside the ranking: the layer keeps every weight it has (unmasked, or without a mask
      // nonzero, as the census counts them), the others share what is left.
      const torch::Tensor has = (mask.defined() ? mask : layers[i].weight.detach() != 0).flatten().cpu();
      score = torch::where(has, std::numeric_limits<double>::infinity(), -1.0).to(torch::kFloat64);
    } else {
      score = layer_scores(method, network, i, mask);
      if (!options.allow_empty) {
        // Reserve the layer's best weight so that no layer is emptied.
        const int64_t best = score.argmax().item<int64_t>();
        if (score[best].item<double>() >= 0) score[best] = std::numeric_limits<double>::infinity();
      }
    }
    const double unit =
        options.budget == BudgetKind::kParams ? 1.0 : std::max(0.0, infos[i].flops_per_weight);
    const int64_t n = score.numel();
    scores.push_back(score);
    owners.push_back(torch::full({n}, static_cast<int64_t>(i), torch::kInt64));
    costs.push_back(torch::full({n}, unit, torch::kFloat64));
    total_cost += unit * static_cast<double>(n);
    total_weights += n;
    dense_flops += static_cast<double>(n) * std::max(0.0, infos[i].flops_per_weight);
  }
  const double budget = budget_for(options.budget, options.sparsity_target, total_weights, dense_flops);
  const torch::Tensor all = torch::cat(scores);
  const auto [sorted, order] = torch::sort(all, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const torch::Tensor cost = torch::cat(costs).index_select(0, order);
  // Prune the shortest prefix of the order that brings the kept cost within budget, and at least
  // every weight that is already pruned.
  const torch::Tensor remaining = total_cost - cost.cumsum(0);
  int64_t prune_count =
      (remaining > budget + 1e-9).sum().item<int64_t>() + (total_cost > budget + 1e-9 ? 1 : 0);
  prune_count = std::max(prune_count, (sorted < 0).sum().item<int64_t>());
  prune_count =
      std::min(prune_count, (sorted < std::numeric_limits<double>::infinity()).sum().item<int64_t>());
  const torch::Tensor pruned_owner = torch::cat(owners).index_select(0, order.narrow(0, 0, prune_count));
  const torch::Tensor pruned_per_layer =
      torch::bincount(pruned_owner, {}, static_cast<int64_t>(layers.size()));
  std::vector<int64_t> kept(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    kept[i] = layers[i].weight.numel() - pruned_per_layer[static_cast<int64_t>(i)].item<int64_t>();
  }
  return make_plan(method, infos, std::move(kept), options);
}

Plan allocate_baseline(const std::string& method, Network& network, const std::vector<LayerInfo>& infos,
                       const BaselineOptions& options) {
  if (is_shape_baseline(method)) return allocate_shape_baseline(method, infos, options);
  return allocate_magnitude_baseline(method, network, infos, options);
}

}  // namespace rdprune
