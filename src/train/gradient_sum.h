// Data-parallel training's gradient exchange: every process's gradients added up before each
// optimizer step, in buckets started while the backward pass is still running.
#pragma once

#include <functional>
#include <vector>

#include <torch/types.h>

#include "rdprune/process_group.h"

namespace rdprune {

class GradientSum {
 public:
  // Watches the gradients of `parameters` (the trainable ones, in model order) through autograd
  // hooks. Buckets of about `bucket_bytes` are filled from the last parameter backwards, the order
  // the backward pass produces them in.
  GradientSum(const std::vector<torch::Tensor>& parameters, ProcessGroup& group,
              int64_t bucket_bytes = int64_t{4} << 20);
  ~GradientSum();
  GradientSum(const GradientSum&) = delete;
  GradientSum& operator=(const GradientSum&) = delete;

  // Waits for every bucket (starting those whose gradients never came: parameters this backward
  // pass did not reach count as zero) and writes the sums into the parameters' gradients. Call
  // after backward() and before the optimizer step.
  void finish();

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into parameters_
    torch::Tensor flat;           // their gradients, one after another
    size_t ready = 0;
    std::function<void()> wait;  // set once started
  };

  void receive(size_t parameter, const torch::Tensor& gradient);
  void start_ready_buckets();
  torch::Tensor slot(size_t parameter);

  std::vector<torch::Tensor> parameters_;
  ProcessGroup& group_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;
  std::vector<int64_t> offset_of_;  // within its bucket's flat tensor
  std::vector<bool> received_;
  std::vector<unsigned> hooks_;
  size_t next_bucket_ = 0;  // buckets start in order, so every process starts the same sums
};

}  // namespace rdprune
