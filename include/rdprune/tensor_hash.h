// Adds a tensor to an FNV fingerprint: its shape and bytes, wherever it lives.
#pragma once

#include "rdprune/layering.h"

#include <torch/types.h>

#include "rdprune/fnv.h"

namespace rdprune {

RDPRUNE_LAYER(1, "data");

inline void add_tensor(Fnv& hash, const torch::Tensor& tensor) {
  const torch::Tensor cpu = tensor.detach().to(torch::kCPU).contiguous();
  const auto shape = cpu.sizes().vec();
  hash.add(shape.data(), shape.size() * sizeof(int64_t));
  hash.add(cpu.data_ptr(), static_cast<size_t>(cpu.numel()) * cpu.element_size());
}

}  // namespace rdprune
