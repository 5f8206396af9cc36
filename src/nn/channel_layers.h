// Internal to channel pruning: which prunable layer a channel slice's tensor belongs to.
#pragma once

#include <optional>
#include <string>

#include "rdprune/network.h"

namespace rdprune {

// Whether `tensor` (a parameter path) is the weight of the prunable layer named `layer`.
inline bool is_weight_of(const std::string& tensor, const std::string& layer) {
  return tensor == layer + ".weight";
}

// The prunable layer whose weight is `tensor`, if any.
inline std::optional<size_t> layer_of(const Network& network, const std::string& tensor) {
  for (size_t i = 0; i < network.layers().size(); ++i)
    if (is_weight_of(tensor, network.layers()[i].name)) return i;
  return std::nullopt;
}

}  // namespace rdprune
