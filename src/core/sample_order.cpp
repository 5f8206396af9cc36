#include "rdprune/sample_order.h"

#include <numeric>
#include <random>

namespace rdprune {

uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  // SplitMix64 finaliser (Steele, Lea, Flood 2014).
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::vector<int64_t> sample_order(int64_t n, bool shuffle, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(n < 0 ? 0 : n));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle || order.size() < 2) return order;
  std::mt19937_64 rng(seed);
  for (size_t i = order.size() - 1; i > 0; --i) {
    // Unbiased draw in [0, i] by rejection.
    const uint64_t bound = i + 1;
    const uint64_t limit = std::mt19937_64::max() - (std::mt19937_64::max() % bound);
    uint64_t r;
    do {
      r = rng();
    } while (r >= limit);
    std::swap(order[i], order[r % bound]);
  }
  return order;
}

}  // namespace rdprune
