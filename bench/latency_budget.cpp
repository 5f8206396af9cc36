// Latency budgets kept when measured: the zoo model's latency tables are timed on this machine at
// the batch size and threads given, channel plans are made under latency budgets (uniform rule and
// global ranking, which need no curves), each plan's model is made physically smaller, and all are
// timed against the dense model in turns in this one process. Printed per model: the budget (kept
// share of the dense latency), the tables' prediction and the measured share (model time / dense
// time, medians), and whether the measured share is within the budget plus the noise (the spread of
// the dense model's own repeats, max / min - 1).
// Usage: bench_latency_budget [arch] [C,H,W] [targets] [batch] [threads] [repeats]
//   defaults: resnet20 1,28,28 0.3,0.5,0.7 64 2 9
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model_timing.h"
#include "rdprune/channel_allocate.h"
#include "rdprune/channels.h"
#include "rdprune/latency.h"
#include "rdprune/text.h"

namespace {

using rdprune::Network;

// A copy of `dense` pruned to `plan` and made smaller.
std::unique_ptr<Network> smaller(Network& dense, const rdprune::ModelMeta& meta, const rdprune::Plan& plan) {
  auto copy = rdprune::create_network(meta);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < copy->parameters().size(); ++i) copy->parameters()[i].copy_(dense.parameters()[i]);
  for (size_t i = 0; i < copy->buffers().size(); ++i) copy->buffers()[i].copy_(dense.buffers()[i]);
  rdprune::apply_channel_plan(*copy, plan, plan.method);
  return rdprune::remove_pruned_channels(*copy);
}

std::vector<std::vector<double>> magnitude_scores(Network& network) {
  std::vector<std::vector<double>> scores;
  for (const auto& group : rdprune::channel_groups(network)) {
    const torch::Tensor score = rdprune::channel_scores(network, group, "magnitude").contiguous();
    scores.emplace_back(score.data_ptr<double>(), score.data_ptr<double>() + score.numel());
  }
  return scores;
}

}  // namespace

int main(int argc, char** argv) {
  rdprune::bench::steady_allocator();
  const std::string arch = argc > 1 ? argv[1] : "resnet20";
  const std::string shape_text = argc > 2 ? argv[2] : "1,28,28";
  const std::string targets_text = argc > 3 ? argv[3] : "0.3,0.5,0.7";
  const int64_t batch = argc > 4 ? std::stoll(argv[4]) : 64;
  const int threads = argc > 5 ? std::stoi(argv[5]) : 2;
  const int repeats = argc > 6 ? std::stoi(argv[6]) : 9;
  std::vector<int64_t> shape;
  for (const auto& part : rdprune::split_list(shape_text, "shape")) shape.push_back(std::stoll(part));
  torch::manual_seed(0);
  torch::set_num_threads(threads);
  const rdprune::ModelMeta meta{arch, shape, 10, "", {}, {}};
  auto dense = rdprune::create_network(meta);
  dense->set_training(false);
  rdprune::ChannelCostModel costs =
      rdprune::channel_cost_model(rdprune::channel_groups(*dense), rdprune::layer_census(*dense, shape));
  rdprune::LatencyOptions latency;
  latency.batch_size = batch;
  rdprune::measure_latency(*dense, costs, latency);

  std::vector<std::unique_ptr<Network>> pruned;
  std::vector<rdprune::Plan> plans;
  for (const auto& target : rdprune::split_list(targets_text, "targets")) {
    rdprune::RdOptions options;
    options.budget = rdprune::BudgetKind::kLatency;
    options.sparsity_target = std::stod(target);
    plans.push_back(rdprune::allocate_channels_uniform(costs, options));
    plans.push_back(rdprune::allocate_channels_global(costs, magnitude_scores(*dense), options));
  }
  std::vector<Network*> models = {dense.get()};
  for (const auto& plan : plans) {
    pruned.push_back(smaller(*dense, meta, plan));
    pruned.back()->set_training(false);
    models.push_back(pruned.back().get());
  }
  const auto samples = rdprune::bench::time_models(
      models, torch::randn(std::vector<int64_t>{batch, shape[0], shape[1], shape[2]}), repeats);
  const double dense_seconds = rdprune::bench::median(samples[0]);
  const auto [low, high] = std::minmax_element(samples[0].begin(), samples[0].end());
  const double noise = *high / *low - 1;

  std::printf(
      "%s %s, batch %lld, %d threads, median of %d repeats; dense %.3f ms measured, %.3f ms by the "
      "tables; noise %.1f%%\n",
      arch.c_str(), shape_text.c_str(), static_cast<long long>(batch), threads, repeats, 1e3 * dense_seconds,
      1e3 * plans.front().dense_latency(), 100 * noise);
  std::printf("%-9s %7s %8s %10s %10s %6s %9s\n", "method", "target", "budget", "predicted", "measured",
              "meets", "speedup");
  for (size_t p = 0; p < plans.size(); ++p) {
    const double budget = 1 - plans[p].sparsity_target;
    const double predicted = plans[p].kept_latency() / plans[p].dense_latency();
    const double measured = rdprune::bench::median(samples[p + 1]) / dense_seconds;
    std::printf("%-9s %7.2f %8.3f %10.3f %10.3f %6s %8.2fx\n", plans[p].method.c_str(),
                plans[p].sparsity_target, budget, predicted, measured,
                measured <= budget * (1 + noise) ? "yes" : "no", 1 / measured);
  }
  return 0;
}
