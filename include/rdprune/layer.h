// What rdprune knows about one prunable layer, without torch. Produced by the torch side's layer
// census and consumed by the core (budgets, allocators) and the reports.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rdprune {

struct LayerInfo {
  std::string name;  // module path as PyTorch's named_modules() prints it
  std::string type;  // conv1d|conv2d|conv3d|conv_transpose{1,2,3}d|linear|linear_t|attn_q|attn_k|attn_v|
                     // embedding|pos_embedding
  std::vector<int64_t> shape;   // weight shape
  int64_t weights = 0;          // number of weights (product of `shape`)
  double flops_per_weight = 0;  // multiply-accumulates per weight per sample; < 0 when unknown
  int64_t calls = 0;            // forward calls seen per sample; > 1 means shared/reused
  double sparsity = 0;          // pruned / weights
};

}  // namespace rdprune
