// Timing whole models in turns, for the channel benchmarks: drift on a noisy machine hits every
// model alike.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <torch/torch.h>

#include "rdprune/network.h"

namespace rdprune::bench {

// glibc's malloc serves blocks above an adaptive threshold (up to 32 MiB) from the system and returns
// them on free, so a model's call can pay page faults for its activations, more for a wider model,
// and how much depends on what ran before. Fixing the threshold at its maximum and never trimming
// keeps freed memory for the next call, as a caching allocator would: the timings then measure the
// models, not the allocator. Call first in main.
inline void steady_allocator() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
  std::printf("allocator: glibc, blocks up to 32 MiB kept for reuse (no trimming)\n");
#endif
}

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
