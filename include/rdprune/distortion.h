// Rate-distortion curve measurement (docs/design.md, "The method", step 1): for every layer and level, prune
// that layer alone by magnitude and measure how far the network's outputs move on calibration data.
#pragma once

#include "rdprune/layering.h"

#include <string>
#include <vector>

#include "rdprune/curves.h"
#include "rdprune/dataset.h"
#include "rdprune/network.h"
#include "rdprune/sink.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

class ProcessGroup;  // rdprune/process_group.h

struct CurveOptions {
  std::string metric = "kl";           // mse: mean over samples and outputs of (f(X) - Y)^2
                                       // worst: max over samples of the per-sample mean
                                       // kl: mean over samples of KL(softmax(Y) || softmax(f(X)))
  int64_t levels = 100;                // grid steps; levels + 1 points
  std::string estimator = "measured";  // measured: forward passes; taylor: second-order Taylor
                                       // estimates from one gradient pass (src/nn/taylor.cpp)
  bool tail = true;                    // add the geometric tail near 100% (see layer_levels)
  int64_t batch_size = 256;            // calibration samples per forward pass
  bool recalibrate_bn = false;         // batch-norm aware: pruned networks run with each calibration
                                       // batch's own statistics (as re-estimating them on it would give)
  bool plain = false;                  // a full forward per layer and level (the exactness oracle)
  int64_t max_memory_mib = 0;          // MiB of cached stage inputs for suffix execution; 0: no limit
  int64_t level_batch = 1;             // suffix execution: levels whose later stages run together as
                                       // one batch (not in batch-norm aware mode, where a batch's
                                       // statistics must be its own)
  std::vector<int64_t> context_kept;   // empty: curves of the network as it is; otherwise kept weights
                                       // per layer: each layer's curve is measured with every other
                                       // layer pruned by magnitude to this count (around a plan)
  std::string cache_dir;               // empty: no cache
  Sink* sink = nullptr;                // progress; null: silent
  ProcessGroup* group = nullptr;       // several processes: the layers are measured in turns, one
                                       // per process, and every process returns the whole set;
                                       // rank 0 alone writes the cache. Null: this process alone
};

void validate(const CurveOptions& options);

// Runs `network` over `data` in order (no shuffling, no augmentation), `batch_size` samples at a
// time, on the device of its weights; the outputs [N, ...] as float on the CPU.
torch::Tensor network_outputs(Network& network, const Dataset& data, int64_t batch_size);
// The reference every distortion is measured against: network_outputs() in eval mode (running
// batch-norm statistics), without gradients.
torch::Tensor reference_outputs(Network& network, const Dataset& data, int64_t batch_size);

// Saves the network's buffers (batch-norm running statistics) and puts them back, with eval mode,
// when it goes out of scope: measurements that run a pruned network on batch statistics move them.
class BufferGuard {
 public:
  explicit BufferGuard(Network& network);
  ~BufferGuard();
  BufferGuard(const BufferGuard&) = delete;
  BufferGuard& operator=(const BufferGuard&) = delete;

 private:
  Network& network_;
  std::vector<torch::Tensor> buffers_;
  std::vector<torch::Tensor> saved_;
};

// Everything a trial on the network changes: parameters, batch-norm statistics and masks (copies).
struct NetworkState {
  std::vector<torch::Tensor> parameters;
  std::vector<torch::Tensor> buffers;
  std::vector<torch::Tensor> masks;  // undefined: dense
};

NetworkState snapshot(Network& network);
// Puts `state` (a snapshot of this network) back, with eval mode and no gradients.
void restore(Network& network, const NetworkState& state);

// Saves the network's state and restores it when it goes out of scope: measurements that prune,
// recalibrate or fine-tune the network to judge a plan.
class StateGuard {
 public:
  explicit StateGuard(Network& network) : network_(network), saved_(snapshot(network)) {}
  ~StateGuard() { restore(network_, saved_); }
  StateGuard(const StateGuard&) = delete;
  StateGuard& operator=(const StateGuard&) = delete;

 private:
  Network& network_;
  NetworkState saved_;
};

// A hash of everything that decides the network's outputs: layer names, parameters, buffers and
// masks. 16 hex digits.
std::string fingerprint(Network& network);

// Measures every layer's curve on `calibration` (unaugmented, in order). Levels below a layer's
// current sparsity are not measured; the current level has distortion 0 by definition; a level
// whose kept count equals the previous level's reuses its value. With a cache directory, each
// finished layer is saved under a key of (fingerprint, calibration, metric, levels), so an
// interrupted run resumes and a changed key never reuses old results.
// O(layers * levels * forward(calibration)) time.
CurveSet measure_curves(Network& network, const Dataset& calibration,
                        const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                        const CurveOptions& options);

// Taylor estimator internals (src/nn/taylor.cpp): per-weight coefficients c_j such that pruning a
// set P costs about sum_{j in P} c_j w_j^2, from one backward pass per calibration sample; and a
// layer's curve at `levels` from them, its weights pruned in `pruning_order` (rdprune/masks.h).
std::vector<torch::Tensor> taylor_coefficients(Network& network, const Dataset& calibration,
                                               const std::string& metric, uint64_t seed);
LayerCurve taylor_curve(const PrunableLayer& layer, const torch::Tensor& pruning_order,
                        const torch::Tensor& coefficients, const std::vector<double>& levels,
                        int64_t unpruned);

// The distortion between outputs and reference outputs under `metric` (both [N, ...]).
double output_distortion(const torch::Tensor& outputs, const torch::Tensor& reference,
                         const std::string& metric);

}  // namespace rdprune
