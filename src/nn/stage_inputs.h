// Internal: suffix execution for curve measurement. The inputs of one stage for every
// calibration batch, carried forward stage by stage, so that a layer's levels run only the stages
// from its own on.
#pragma once

#include <functional>
#include <vector>

#include <torch/torch.h>

#include "rdprune/dataset.h"
#include "rdprune/network.h"

namespace rdprune {

class StageInputs {
 public:
  StageInputs(Network& network, const Dataset& data, int64_t batch_size, const torch::Device& device,
              int64_t max_bytes);

  // Moves the cache to the inputs of `stage` (never backwards). False when they would take more
  // than the memory limit; the cache then stays where it was.
  bool advance(size_t stage);

  // The network's outputs from the cached stage on, [N, ...] float on the CPU.
  torch::Tensor outputs();

  // The outputs of `count` versions of the cached stage at once: set(j) puts version j in place,
  // the cached stage runs once per version, and the stages after it run all versions of a
  // calibration batch as one batch. One [N, ...] tensor per version.
  std::vector<torch::Tensor> outputs_together(size_t count, const std::function<void(size_t)>& set);

 private:
  size_t last() const { return network_.num_stages(); }

  Network& network_;
  int64_t max_bytes_;
  size_t stage_ = 0;
  std::vector<StageValues> inputs_;  // per calibration batch
};

}  // namespace rdprune
