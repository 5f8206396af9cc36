// The native model zoo. Every model is a sequence of stages (stem, blocks or half blocks, head) so
// that a caller can run the network from any stage on: forward(x) == run_from(0, {x})[0].
#pragma once

#include "rdprune/layering.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "rdprune/channel_cost.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

struct ZooSpec {
  std::string arch;  // mlp|lenet5|resnet20|resnet32|resnet56|vgg16|resnet18|resnet50|vit
  int64_t in_channels = 1;
  int64_t image_size = 28;  // square inputs of image_size x image_size
  int64_t num_classes = 10;
  // Kept channels per channel group (ZooNetImpl::channel_groups), by group name: a model made
  // physically smaller by channel pruning. Groups not named keep the architecture's width.
  std::map<std::string, int64_t> widths;
};

class ZooNetImpl : public torch::nn::Module {
 public:
  // The tensors passed between stages: one, or several where a stage hands on more than one.
  using Values = std::vector<torch::Tensor>;

  torch::Tensor forward(torch::Tensor x) { return run_from(0, {std::move(x)}).at(0); }
  // Runs stages [first, last) on `x`, the outputs of stage first-1 (or {input} when first = 0).
  Values run_range(size_t first, size_t last, Values x);
  // Runs stages [first, num_stages()).
  Values run_from(size_t first, Values x) { return run_range(first, num_stages(), std::move(x)); }
  size_t num_stages() const { return stages_.size(); }
  // Module-path prefixes of each stage's own layers (empty for stages without parameters). A layer
  // belongs to the stage with the longest prefix that names it.
  const std::vector<std::vector<std::string>>& stage_prefixes() const { return stage_prefixes_; }
  // The paths of the position embeddings among its parameters (LoadOptions::prune_embeddings).
  virtual std::vector<std::string> position_embeddings() const { return {}; }
  // The channels that can be removed together (docs/channels.md), at this model's widths; channels
  // tied through residual additions form one group.
  const std::vector<ChannelGroup>& channel_groups() const { return groups_; }

 protected:
  void add_stage(std::vector<std::string> prefixes, std::function<Values(Values)> stage);
  // A stage from one tensor to one tensor.
  void add_stage(std::string prefix, std::function<torch::Tensor(torch::Tensor)> stage);
  // The group of `channels` outputs of `layer` (its weight, its bias when it has one), the batch
  // norm `norm` after it (empty: none), and the inputs of `readers`, each reading `per_channel`
  // inputs per channel (more than one behind a flatten).
  // Returns the group's index.
  size_t add_group(const std::string& layer, int64_t channels, bool bias, const std::string& norm,
                   const std::vector<std::pair<std::string, int64_t>>& readers);
  // Another layer (no bias) and its batch norm making group `group`'s channels: an addition ties its
  // outputs to the group's.
  void tie_producer(size_t group, const std::string& layer, const std::string& norm);
  // Another layer reading group `group`'s channels, `per_channel` inputs each.
  void add_reader(size_t group, const std::string& reader, int64_t per_channel);
  // The group `name` of `channels` blocks of `per_channel` outputs of every producer (its weight's
  // rows and its bias) and as many inputs of every reader: a transformer's attention heads.
  void add_block_group(const std::string& name, int64_t channels, int64_t per_channel,
                       const std::vector<std::string>& producers, const std::vector<std::string>& readers);

 private:
  std::vector<std::function<Values(Values)>> stages_;
  std::vector<std::vector<std::string>> stage_prefixes_;
  std::vector<ChannelGroup> groups_;
};

// The width of group `name` in `spec`: its entry in spec.widths, else `dense`.
int64_t width_of(const ZooSpec& spec, const std::string& name, int64_t dense);

// Builds the architecture with fresh weights. Throws UsageError for an unknown name or a spec the
// architecture cannot take (e.g. images too small, a width for a group it does not have).
std::shared_ptr<ZooNetImpl> make_zoo_model(const ZooSpec& spec);

}  // namespace rdprune
