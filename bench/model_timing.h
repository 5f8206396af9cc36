// Timing whole models in turns, for the channel benchmarks: drift on a noisy machine hits every
// model alike.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

#include <torch/torch.h>

#include "rdprune/network.h"

namespace rdprune::bench {

inline double seconds_for(Network& network, const torch::Tensor& x, int calls) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) network.forward(x);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / calls;
}

inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Seconds per forward of every model, `repeats` samples each, taken in turns (no gradients).
inline std::vector<std::vector<double>> time_models(const std::vector<Network*>& models,
                                                    const torch::Tensor& x, int repeats) {
  torch::NoGradGuard no_grad;
  const int calls = x.size(0) == 1 ? 20 : 2;
  // Warm-up: TorchScript's executor optimises a graph after its first runs.
  for (Network* model : models) seconds_for(*model, x, 3);
  std::vector<std::vector<double>> samples(models.size());
  for (int r = 0; r < repeats; ++r)
    for (size_t m = 0; m < models.size(); ++m) samples[m].push_back(seconds_for(*models[m], x, calls));
  return samples;
}

}  // namespace rdprune::bench
