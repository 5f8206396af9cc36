// A freshly initialised zoo model for 1x28x28 images of 10 classes, the same for the same seed
// (for the tests that link LibTorch; the rest of the support library is torch-free).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "rdprune/network.h"

namespace rdprune::testing {

inline std::unique_ptr<Network> fresh_network(const std::string& arch, uint64_t seed = 0) {
  torch::manual_seed(seed);
  ModelMeta meta;
  meta.arch = arch;
  meta.input_shape = {1, 28, 28};
  meta.num_classes = 10;
  return create_network(meta);
}

}  // namespace rdprune::testing
