// Deterministic sample orders. Torch-free so that the same seed gives the same order everywhere:
// std::mt19937_64 is fully specified by the standard, and the Fisher-Yates shuffle is our own
// (std::shuffle differs between standard libraries).
#pragma once

#include <cstdint>
#include <vector>

namespace rdprune {

// 0..n-1, shuffled by `seed` when `shuffle` is true. O(n).
std::vector<int64_t> sample_order(int64_t n, bool shuffle, uint64_t seed);

// Seed for epoch `epoch` of a run seeded with `seed` (a SplitMix64 step, so nearby seeds differ).
uint64_t derive_seed(uint64_t seed, uint64_t stream);

}  // namespace rdprune
