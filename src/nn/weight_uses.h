// Internal: watching a forward pass for the calls that read prunable weights. Each aten
// convolution/linear/matmul call with an argument viewing a layer's weight is a use of that layer
// (of each layer whose rows it reads, for a whole in-projection). Calls nested inside a use
// (aten::conv2d -> aten::convolution -> ...) are the same use and are not reported again.
#pragma once

#include <ATen/record_function.h>

#include <functional>
#include <string>
#include <vector>

#include "rdprune/network.h"

namespace rdprune {

// One call that reads prunable weights.
struct WeightUse {
  std::string op;                   // e.g. "aten::linear"
  std::vector<c10::IValue> inputs;  // as the observer saw them (TorchScript's interpreter may show
                                    // more values before the call's own arguments)
  size_t weight_input = 0;          // the input that reads the weights
  torch::Tensor output;             // its first output (for convolutions; may be stale otherwise)

  // The tensor the weights multiply: the argument just before them (conv(x, W), linear(x, W),
  // addmm(b, x, W), matmul(x, W)); null when there is none.
  const torch::Tensor* activation() const;
  // Whether it is a convolution (features on axis 1), not a matrix product (features last).
  bool convolution() const { return op.find("conv") != std::string::npos; }
  // Whether it is a transposed convolution (its weight is [in, out / groups, ...]).
  bool transposed_convolution() const;
};

// Sees one use and the layers it reads.
using WeightUseVisitor = std::function<void(const std::vector<size_t>& layers, const WeightUse& use)>;

// Runs `body` (forward passes on the thread that calls this) and reports to `visit` every use of
// `layers`' weights it makes.
void observe_weight_uses(const std::vector<PrunableLayer>& layers, const WeightUseVisitor& visit,
                         const std::function<void()>& body);

}  // namespace rdprune
