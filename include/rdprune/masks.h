// Magnitude masks. A layer's order is computed once and every level reuses it: weights already
// pruned come first, then ascending |w|, ties broken by index, so masks are deterministic and
// only grow as the level rises.
#pragma once

#include "rdprune/layering.h"

#include <torch/types.h>

#include "rdprune/network.h"
#include "rdprune/plan.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

// Flat indices of `weight` in pruning order (int64 [numel]). `mask` may be undefined (dense).
torch::Tensor magnitude_order(const torch::Tensor& weight, const torch::Tensor& mask);

// Flat indices of layer `layer`'s weight in the order its criterion prunes them (the network's,
// rdprune/criterion.h): magnitude_order() for magnitude. For wanda, weights already pruned first;
// then each output row's unpruned weights by ascending score, taken from the rows in turn (a row
// with fewer weights left joins later), so that any count kept leaves the rows as equal as whole
// weights allow.
torch::Tensor pruning_order(const Network& network, size_t layer, const torch::Tensor& mask);

// A bool mask of `shape` that prunes the first numel - kept entries of `order`.
torch::Tensor mask_keeping(const torch::Tensor& order, int64_t kept, c10::IntArrayRef shape);

// Unpruned weights per layer (from the mask, or all when dense).
int64_t unpruned_count(const Network& network, size_t layer);

// Applies a plan: each layer keeps the `kept` unpruned weights its criterion ranks highest. Throws Error if
// the plan does not match the model or asks a layer to keep weights it has already pruned. A channel
// plan is applied as apply_channel_plan does (rdprune/channels.h).
void apply_plan(Network& network, const Plan& plan, const std::string& source);

}  // namespace rdprune
