#include "stage_inputs.h"

namespace rdprune {
namespace {

torch::Tensor logits(const StageValues& values) {
  return values.at(0).to(torch::kCPU, torch::kFloat32);
}

}  // namespace

StageInputs::StageInputs(Network& network, const Dataset& data, int64_t batch_size,
                         const torch::Device& device, int64_t max_bytes)
    : network_(network), max_bytes_(max_bytes) {
  BatchLoader loader(data, batch_size, /*shuffle=*/false, /*seed=*/0);
  for (int64_t i = 0; i < loader.num_batches(); ++i) inputs_.push_back({loader.get(i).images.to(device)});
}

bool StageInputs::advance(size_t stage) {
  if (stage <= stage_) return stage == stage_;
  std::vector<StageValues> next;
  int64_t bytes = 0;
  for (const auto& input : inputs_) {
    next.push_back(network_.run_stages(stage_, stage, input));
    for (const auto& value : next.back()) bytes += value.numel() * static_cast<int64_t>(value.element_size());
    if (max_bytes_ > 0 && bytes > max_bytes_) return false;
  }
  inputs_ = std::move(next);
  stage_ = stage;
  return true;
}

torch::Tensor StageInputs::outputs() {
  std::vector<torch::Tensor> outputs;
  for (const auto& input : inputs_) outputs.push_back(logits(network_.run_stages(stage_, last(), input)));
  return torch::cat(outputs);
}

std::vector<torch::Tensor> StageInputs::outputs_together(size_t count,
                                                         const std::function<void(size_t)>& set) {
  std::vector<std::vector<StageValues>> heads(inputs_.size());
  for (size_t j = 0; j < count; ++j) {
    set(j);
    for (size_t b = 0; b < inputs_.size(); ++b)
      heads[b].push_back(network_.run_stages(stage_, stage_ + 1, inputs_[b]));
  }
  std::vector<std::vector<torch::Tensor>> outputs(count);
  for (auto& versions : heads) {
    // Each value the stage hands on, every version's batch one after the other.
    StageValues together;
    for (size_t v = 0; v < versions.front().size(); ++v) {
      std::vector<torch::Tensor> parts;
      for (const auto& version : versions) parts.push_back(version.at(v));
      together.push_back(torch::cat(parts));
    }
    versions.clear();
    const auto tails = logits(network_.run_stages(stage_ + 1, last(), std::move(together)))
                           .chunk(static_cast<int64_t>(count));
    for (size_t j = 0; j < count; ++j) outputs[j].push_back(tails[j]);
  }
  std::vector<torch::Tensor> result;
  for (const auto& parts : outputs) result.push_back(torch::cat(parts));
  return result;
}

}  // namespace rdprune
