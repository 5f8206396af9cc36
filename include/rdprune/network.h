// One interface over the native model zoo and TorchScript files: prunable layers, forward,
// train/eval mode, parameters, masks, save/load.
#pragma once

#include "rdprune/layering.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "rdprune/dataset.h"
#include "rdprune/layer.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

// The tensors that pass from one stage of a network to the next.
using StageValues = std::vector<torch::Tensor>;

// A prunable weight matrix (docs/design.md, "Prunable layers"), named by its module path.
struct PrunableLayer {
  std::string name;         // e.g. "layer1.0.conv1", "encoder.layers.0.self_attn.in_proj_weight.q"
  std::string type;         // conv2d, linear, attn_q, ... (LayerInfo::type)
  torch::Tensor weight;     // the parameter, or a view of a block of its rows (q, k or v)
  torch::Tensor parameter;  // the parameter that holds `weight`
  int64_t row_begin = 0;    // the first row of `weight` in `parameter`

  // The rows of `whole` (shaped like the parameter, e.g. its gradient) that are this layer's.
  torch::Tensor rows_of(const torch::Tensor& whole) const {
    return whole.narrow(0, row_begin, weight.size(0));
  }
};

// What a checkpoint records so that `--model FILE` rebuilds the model without further flags.
struct ModelMeta {
  std::string arch;                       // zoo name; "torchscript" for TorchScript files
  std::vector<int64_t> input_shape;       // C, H, W; empty when unknown (TorchScript without a hint)
  int64_t num_classes = 0;                // 0 when unknown
  std::string dataset;                    // the dataset it was trained on, if known
  Normalization normalization;            // that dataset's normalisation, if known
  std::map<std::string, int64_t> widths;  // zoo models made smaller by channel pruning: kept channels
                                          // per channel group (ZooSpec::widths)
};

// The compute spent through one Network object, for the reports' cost columns.
struct ComputeUsage {
  int64_t forward_samples = 0;  // samples whose outputs a forward pass computed (a suffix pass counts once)
  int64_t train_steps = 0;      // optimizer steps taken on the network
  // Work taken from a cache instead of done again (curves an earlier run measured), charged at
  // what it cost when it was done: a report that reuses it still states what its result cost.
  double reused_seconds = 0;
  int64_t reused_forward_samples = 0;
};

class Network {
 public:
  virtual ~Network() = default;

  // The network's outputs for a batch; counted in usage().
  torch::Tensor forward(const torch::Tensor& input) {
    if (input.dim() > 0) usage_.forward_samples += input.size(0);
    return forward_impl(input);
  }
  virtual void set_training(bool training) = 0;
  virtual std::vector<torch::Tensor> parameters() = 0;
  // Non-trainable state that shapes the outputs (batch-norm running statistics).
  virtual std::vector<torch::Tensor> buffers() = 0;
  virtual void to(const torch::Device& device) = 0;
  // Writes the model (with its masks) in its own format, atomically.
  virtual void save(const std::string& path) = 0;
  // Writes the model for deployment: pruned weights are zero, no masks travel with it (a later
  // fine-tune would not hold them). Same format as save(), atomically.
  virtual void save_dense(const std::string& path) = 0;
  // "checkpoint" (native zoo) or "torchscript".
  virtual std::string format() const = 0;
  // Clears batch-norm running statistics and makes them a cumulative average until
  // end_batch_norm_recalibration(). Returns false when the model has no batch norm.
  virtual bool begin_batch_norm_recalibration() = 0;
  // After each recalibration batch's forward pass (TorchScript models take its statistics here).
  virtual void batch_norm_recalibration_step() {}
  virtual void end_batch_norm_recalibration() = 0;

  // Suffix execution: the network as a sequence of stages, forward(x) == run_stages(0,
  // num_stages(), {x})[0], where a stage's outputs are the next stage's inputs: one tensor, or
  // several (a residual block cut after its first convolution hands on its input and the branch).
  // A model without known stages is one stage. When only layer i changes, the inputs of
  // stage_of(i) do not.
  virtual size_t num_stages() const { return 1; }
  // Runs stages [first, last); a run that reaches the outputs is counted in usage().
  StageValues run_stages(size_t first, size_t last, StageValues input) {
    if (last >= num_stages() && !input.empty() && input.front().dim() > 0)
      usage_.forward_samples += input.front().size(0);
    return run_stages_impl(first, last, std::move(input));
  }
  // True when, in eval mode, each sample's output depends on that sample alone, so that batches
  // may be joined (level batching). A TorchScript forward may couple samples (batch-wide
  // statistics, branches on the whole batch), so only models that know it say so.
  virtual bool independent_samples() const { return false; }
  // The stage that holds layer `layer` (an index into layers()).
  size_t stage_of(size_t layer) const { return layer < layer_stages_.size() ? layer_stages_[layer] : 0; }
  // The last stage that uses layer `layer`: later than stage_of() for a layer called again further on.
  size_t last_stage_of(size_t layer) const {
    return layer < layer_last_stages_.size() ? layer_last_stages_[layer] : stage_of(layer);
  }

  const std::vector<PrunableLayer>& layers() const { return layers_; }
  const ModelMeta& meta() const { return meta_; }
  ModelMeta& meta() { return meta_; }

  // Masks aligned with layers(): a bool tensor of the weight's shape, or undefined (dense).
  const std::vector<torch::Tensor>& masks() const { return masks_; }
  void set_mask(size_t layer, const torch::Tensor& mask);
  // Zeroes every masked weight (weight *= mask). Call after each optimizer step.
  void apply_masks();
  // Zeroes the gradients of masked weights, so momentum and weight decay never revive them.
  void mask_gradients();

  // The within-layer criterion (rdprune/criterion.h): "magnitude", or "wanda" with each layer's
  // input-feature norms (input_feature_norms()).
  const std::string& criterion() const { return criterion_; }
  const std::vector<torch::Tensor>& input_norms() const { return input_norms_; }
  void set_criterion(const std::string& name, std::vector<torch::Tensor> input_norms = {});

  const ComputeUsage& usage() const { return usage_; }
  void count_train_step() { ++usage_.train_steps; }
  void charge_reused(double seconds, int64_t forward_samples) {
    usage_.reused_seconds += seconds;
    usage_.reused_forward_samples += forward_samples;
  }

 protected:
  virtual torch::Tensor forward_impl(const torch::Tensor& input) = 0;
  virtual StageValues run_stages_impl(size_t first, size_t last, StageValues input) {
    if (first == 0 && last >= 1) return {forward_impl(input.at(0))};
    return input;
  }

  std::vector<PrunableLayer> layers_;
  std::vector<torch::Tensor> masks_;
  std::vector<size_t> layer_stages_;       // aligned with layers_; empty: every layer in stage 0
  std::vector<size_t> layer_last_stages_;  // aligned with layers_; empty: as layer_stages_
  ModelMeta meta_;
  ComputeUsage usage_;
  std::string criterion_ = "magnitude";
  std::vector<torch::Tensor> input_norms_;
};

// Names accepted by --arch.
const std::vector<std::string>& zoo_architectures();
// A freshly initialised zoo model (torch::manual_seed decides the weights).
std::unique_ptr<Network> create_network(const ModelMeta& meta);
// Which parameters a loaded network offers as prunable layers beyond its weight matrices.
struct LoadOptions {
  // Embedding tables (read by an embedding lookup) and position embeddings (a parameter of two or
  // more dimensions added to the activations, e.g. the vit's pos_embed) become layers of types
  // "embedding" and "pos_embedding". Off: they stay dense, as norms and biases always do.
  bool prune_embeddings = false;
  // Where the model runs; every tensor computed from it follows. Files are read to the CPU first,
  // so a model saved on one device loads on any other.
  torch::Device device = torch::kCPU;
};

// Whether a layer type is an embedding (LoadOptions::prune_embeddings): no input features, no
// multiply-accumulates.
bool is_embedding_type(const std::string& type);

// Loads a rdprune checkpoint or a TorchScript file; throws Error naming the path otherwise.
std::unique_ptr<Network> load_network(const std::string& path, const LoadOptions& options = {});

// Per-layer facts, measured with one forward pass of a single sample of `input_shape` (C,H,W):
// FLOPs per weight from the real output sizes and how often each weight is used. Pass an empty
// shape to skip the pass (FLOPs reported as unknown).
std::vector<LayerInfo> layer_census(Network& network, const std::vector<int64_t>& input_shape);

// Re-estimates batch-norm statistics of a (pruned) network on `data` in train mode without
// updating weights: a cheap repair after one-shot pruning. Returns false if there is no batch norm.
bool recalibrate_batch_norm(Network& network, const Dataset& data, int64_t batch_size = 128);

// Checks that the model maps a [B, C, H, W] batch to [B, classes] logits; throws Error otherwise.
void check_logits(Network& network, const std::vector<int64_t>& input_shape, int64_t num_classes);

}  // namespace rdprune
