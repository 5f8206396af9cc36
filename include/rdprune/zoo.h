// The native model zoo. Every model is a sequence of stages (stem, blocks, head) so that a
// caller can run the network from any stage on: forward(x) == run_from(0, x).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace rdprune {

struct ZooSpec {
  std::string arch;  // mlp|lenet5|resnet20|resnet32|resnet56|vgg16|resnet18|resnet50
  int64_t in_channels = 1;
  int64_t image_size = 28;  // square inputs of image_size x image_size
  int64_t num_classes = 10;
};

class ZooNetImpl : public torch::nn::Module {
 public:
  torch::Tensor forward(torch::Tensor x) { return run_from(0, std::move(x)); }
  // Runs stages [first, last) on `x`, the output of stage first-1 (or the input when first = 0).
  torch::Tensor run_range(size_t first, size_t last, torch::Tensor x);
  // Runs stages [first, num_stages()).
  torch::Tensor run_from(size_t first, torch::Tensor x) {
    return run_range(first, num_stages(), std::move(x));
  }
  size_t num_stages() const { return stages_.size(); }
  // Module-path prefix of each stage ("" for stages without parameters of their own).
  const std::vector<std::string>& stage_prefixes() const { return stage_prefixes_; }

 protected:
  void add_stage(std::string prefix, std::function<torch::Tensor(torch::Tensor)> stage);

 private:
  std::vector<std::function<torch::Tensor(torch::Tensor)>> stages_;
  std::vector<std::string> stage_prefixes_;
};

// Builds the architecture with fresh weights. Throws UsageError for an unknown name or a spec the
// architecture cannot take (e.g. images too small).
std::shared_ptr<ZooNetImpl> make_zoo_model(const ZooSpec& spec);

}  // namespace rdprune
