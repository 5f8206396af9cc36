// Internal: batch-norm recalibration of a TorchScript model (docs/channels.md, "TorchScript
// models"). A scripted batch norm's momentum is a constant of its code, so the running statistics
// cannot be told to average over the recalibration batches as the zoo's are. With momentum m and
// running statistics set to zero before a batch, the batch leaves m times its own statistics in
// them: each batch's are taken out that way, and their mean is written at the end, which is what a
// cumulative average (momentum None) gives. Batch norms whose momentum is None average by
// themselves and are only reset.
#pragma once

#include <string>
#include <vector>

#include <torch/script.h>

namespace rdprune {

class ScriptBatchNorms {
 public:
  // Finds the submodules holding running_mean and running_var tensors. Throws Error naming one
  // whose momentum is not a constant number or None.
  ScriptBatchNorms(const torch::jit::Module& module, const std::string& source);

  bool empty() const { return norms_.empty(); }
  // Clears the statistics: zero (mean 0 and variance 1 where the batch norm averages by itself).
  void begin();
  // After a batch's forward pass in training mode: takes its statistics out.
  void step();
  // Writes the mean over the batches (nothing changes without a batch).
  void end();

 private:
  struct Norm {
    torch::jit::Module module;
    double momentum = 0;  // 0: None, the module averages by itself
    torch::Tensor mean_sum;
    torch::Tensor var_sum;
  };
  void zero(Norm& norm);

  std::vector<Norm> norms_;
  int64_t batches_ = 0;
};

}  // namespace rdprune
