// Internal: the two Network implementations. Not part of the public API.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include "rdprune/network.h"
#include "rdprune/zoo.h"
#include "script_batch_norm.h"
#include "script_channels.h"
#include "script_layers.h"
#include "script_stages.h"

namespace rdprune {

inline constexpr const char* kCheckpointSchema = "rdprune.checkpoint/1";

// A zoo model with the metadata that rebuilds it.
class NativeNetwork : public Network {
 public:
  explicit NativeNetwork(const ModelMeta& meta, const LoadOptions& options = {});

  torch::Tensor forward_impl(const torch::Tensor& input) override { return model_->forward(input); }
  void set_training(bool training) override { model_->train(training); }
  std::vector<torch::Tensor> parameters() override { return model_->parameters(); }
  std::vector<torch::Tensor> buffers() override { return model_->buffers(); }
  void to(const torch::Device& device) override;
  void save(const std::string& path) override { write(path, /*with_masks=*/true); }
  void save_dense(const std::string& path) override { write(path, /*with_masks=*/false); }
  std::string format() const override { return "checkpoint"; }
  bool begin_batch_norm_recalibration() override;
  void end_batch_norm_recalibration() override;
  size_t num_stages() const override { return model_->num_stages(); }
  bool independent_samples() const override { return true; }
  StageValues run_stages_impl(size_t first, size_t last, StageValues input) override {
    return model_->run_range(first, last, std::move(input));
  }

  ZooNetImpl& model() { return *model_; }
  // Restores weights, buffers and masks from a checkpoint archive.
  void load_state(torch::serialize::InputArchive& archive, const std::string& path);

 private:
  void write(const std::string& path, bool with_masks);

  std::shared_ptr<ZooNetImpl> model_;
};

// A TorchScript module as saved by torch.jit.save.
class ScriptNetwork : public Network {
 public:
  ScriptNetwork(torch::jit::Module module, const std::string& path, const LoadOptions& options = {});

  torch::Tensor forward_impl(const torch::Tensor& input) override;
  void set_training(bool training) override { module_.train(training); }
  std::vector<torch::Tensor> parameters() override;
  std::vector<torch::Tensor> buffers() override;
  void to(const torch::Device& device) override;
  void save(const std::string& path) override;
  void save_dense(const std::string& path) override;
  std::string format() const override { return "torchscript"; }
  bool begin_batch_norm_recalibration() override;
  void batch_norm_recalibration_step() override;
  void end_batch_norm_recalibration() override;
  size_t num_stages() const override { return stages_ ? stages_->size() : 1; }
  StageValues run_stages_impl(size_t first, size_t last, StageValues input) override;

  torch::jit::Module& module() { return module_; }
  const std::string& path() const { return path_; }
  const LoadOptions& load_options() const { return options_; }
  // The channel groups found on the forward graph, and why the other layers' channels stay whole.
  const ScriptChannels& channels() const { return channels_; }

 private:
  torch::jit::Module module_;
  std::unique_ptr<ScriptStages> stages_;    // the forward graph cut into stages; null: one stage
  std::vector<ScriptLayerSite> sites_;      // where each layer's weight lives
  std::vector<torch::jit::Module> owners_;  // the module holding each layer's parameter
  std::string path_;
  LoadOptions options_;
  ScriptChannels channels_;
  std::unique_ptr<ScriptBatchNorms> recalibration_;  // while batch norms are recalibrated
};

// ModelMeta <-> JSON text, shared by both formats.
std::string meta_to_json(const ModelMeta& meta);
ModelMeta meta_from_json(const std::string& text, const std::string& path);

}  // namespace rdprune
