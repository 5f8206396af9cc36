// The allocators behind make_allocator, one file each.
#pragma once

#include <memory>
#include <string>

#include "rdprune/allocator.h"

namespace rdprune {

// rd: curves, the exact DP, and refinement around rd's own plan on the joint distortion.
std::unique_ptr<Allocator> make_rd_allocator(const AllocatorSettings& settings);
// global, lamp, uniform, uniform+, erk.
std::unique_ptr<Allocator> make_baseline_allocator(const std::string& method);
// select: the pool's plans judged, the best moved by refinement and exchanges.
std::unique_ptr<Allocator> make_select_allocator(const AllocatorSettings& settings);
// Channel plans (src/alloc/channel_allocator.cpp): rd, uniform, global, slimming.
std::unique_ptr<Allocator> make_channel_allocator(const std::string& method,
                                                  const AllocatorSettings& settings);
// owl and alphapruning (src/alloc/layerwise_allocator.cpp).
std::unique_ptr<Allocator> make_owl_allocator(const OwlOptions& options);
std::unique_ptr<Allocator> make_alphapruning_allocator(const AlphaOptions& options);

}  // namespace rdprune
