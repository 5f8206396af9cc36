// Internal: batch-norm recalibration of a TorchScript model (docs/pytorch.md, "3. Prune"). A
// scripted batch norm's momentum is a constant of its code, so the running statistics cannot be
// told to average over the recalibration batches as the zoo's are. With momentum m and running
// statistics set to zero before a batch, the batch leaves m times its own statistics in them: each
// batch's are taken out that way, and their mean is written at the end, which is what a cumulative
// average (momentum None) gives. Batch norms whose momentum is None average by themselves and are
// only reset; a batch norm that never ran keeps the statistics it had.
#pragma once

#include <string>
#include <vector>

#include <torch/script.h>

namespace rdprune {

class ScriptBatchNorms {
 public:
  // Finds the submodules holding running_mean and running_var tensors, each once. Those without a
  // momentum (frozen ones, which training never updates) are left alone. Throws Error naming one
  // whose momentum is not a constant number or None.
  ScriptBatchNorms(const torch::jit::Module& module, const std::string& source);

  bool empty() const { return norms_.empty(); }
  // Clears the statistics: zero (mean 0 and variance 1 where the batch norm averages by itself).
  void begin();
  // After a batch's forward pass in training mode: takes its statistics out. Throws Error for a
  // batch norm that ran more than once in the pass (its statistics are mixed).
  void step();
  // Writes each batch norm's mean over the batches it ran in; one that never ran gets back what
  // it had before begin().
  void end();

 private:
  struct Norm {
    std::string name;
    torch::jit::Module module;
    double momentum = 0;                // 0: None, the module averages by itself
    std::vector<torch::Tensor> before;  // running_mean, running_var as they were
    torch::Tensor mean_sum;
    torch::Tensor var_sum;
    int64_t runs = 0;
    int64_t tracked = 0;  // its num_batches_tracked after the last step
  };
  torch::Tensor statistic(const Norm& norm, const char* name) const;
  // Its num_batches_tracked tensor; undefined where it has none.
  torch::Tensor batches_tracked(const Norm& norm) const;
  // Calls of the batch norm since the last step (1 where it does not count them).
  int64_t calls(const Norm& norm) const;
  void zero(Norm& norm);

  std::string source_;
  std::vector<Norm> norms_;
};

}  // namespace rdprune
