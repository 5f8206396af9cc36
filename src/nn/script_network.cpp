#include <algorithm>
#include <unordered_set>

#include "network_impl.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

constexpr const char* kMaskBuffer = "weight_mask";

// The qualified class name without TorchScript's "___torch_mangle_N." segments, e.g.
// "__torch__.torch.nn.modules.conv.Conv2d".
std::string plain_type_name(const torch::jit::Module& module) {
  const auto name = module.type()->name();
  if (!name) return "";
  std::string text = name->qualifiedName();
  const std::string mangle = "___torch_mangle_";
  for (size_t at = text.find(mangle); at != std::string::npos; at = text.find(mangle)) {
    const size_t dot = text.find('.', at);
    text.erase(at, dot == std::string::npos ? std::string::npos : dot - at + 1);
  }
  return text;
}

std::string layer_type(const torch::jit::Module& module) {
  const std::string name = plain_type_name(module);
  if (name == "__torch__.torch.nn.modules.conv.Conv2d") return "conv2d";
  if (name == "__torch__.torch.nn.modules.linear.Linear") return "linear";
  return "";
}

}  // namespace

ScriptNetwork::ScriptNetwork(torch::jit::Module module, const std::string& path)
    : module_(std::move(module)), path_(path) {
  meta_.arch = "torchscript";
  std::unordered_set<const void*> seen;
  for (const auto& item : module_.named_modules()) {
    const std::string type = layer_type(item.value);
    if (type.empty() || !item.value.hasattr("weight")) continue;
    const c10::IValue weight = item.value.attr("weight");
    if (!weight.isTensor()) continue;
    const torch::Tensor tensor = weight.toTensor();
    // A module registered under two names is one layer: keep the first name (as Python's
    // named_modules() does, which skips modules it has already yielded).
    if (!seen.insert(tensor.unsafeGetTensorImpl()).second) continue;
    layers_.push_back({item.name, type, tensor});
    layer_modules_.push_back(item.value);
  }
  masks_.resize(layers_.size());
  // Masks saved by rdprune travel as `weight_mask` buffers (torch.nn.utils.prune's name).
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (!layer_modules_[i].hasattr(kMaskBuffer)) continue;
    const c10::IValue mask = layer_modules_[i].attr(kMaskBuffer);
    if (!mask.isTensor() || mask.toTensor().sizes() != layers_[i].weight.sizes()) {
      throw Error(path + ": layer " + layers_[i].name + ": weight_mask does not match the weight's shape");
    }
    if (!mask.toTensor().to(torch::kBool).all().item<bool>()) set_mask(i, mask.toTensor());
  }
}

torch::Tensor ScriptNetwork::forward(const torch::Tensor& input) {
  c10::IValue output;
  try {
    output = module_.forward({input});
  } catch (const c10::Error& e) {
    std::string reason = e.what_without_backtrace();
    throw Error(path_ + ": forward pass failed on input " + std::to_string(input.size(0)) + "x" +
                std::to_string(input.size(1)) + "x" + std::to_string(input.size(2)) + "x" +
                std::to_string(input.size(3)) + " (" + reason.substr(0, reason.find('\n')) + ")");
  }
  if (!output.isTensor()) {
    throw Error(path_ + ": model output is a " + output.tagKind() + ", expected a logits tensor");
  }
  return output.toTensor();
}

bool ScriptNetwork::begin_batch_norm_recalibration() {
  throw Error(path_ + ": --bn-recalibrate is not supported for TorchScript models");
}

std::vector<torch::Tensor> ScriptNetwork::buffers() {
  std::vector<torch::Tensor> out;
  for (const auto& buffer : module_.buffers(/*recurse=*/true)) out.push_back(buffer);
  return out;
}

void ScriptNetwork::to(const torch::Device& device) {
  module_.to(device);
  for (auto& mask : masks_) {
    if (mask.defined()) mask = mask.to(device);
  }
}

std::vector<torch::Tensor> ScriptNetwork::parameters() {
  std::vector<torch::Tensor> out;
  for (const auto& parameter : module_.parameters(/*recurse=*/true)) out.push_back(parameter);
  return out;
}

void ScriptNetwork::save(const std::string& path) {
  const bool masked =
      std::any_of(masks_.begin(), masks_.end(), [](const torch::Tensor& m) { return m.defined(); });
  if (masked) {
    // Every prunable layer gets the buffer: TorchScript may share one class type between
    // several Conv2d instances, and each instance of a type must carry the same attributes.
    for (size_t i = 0; i < layers_.size(); ++i) {
      const torch::Tensor mask =
          masks_[i].defined() ? masks_[i] : torch::ones_like(layers_[i].weight, torch::kBool);
      layer_modules_[i].register_buffer(kMaskBuffer, mask.to(torch::kBool));
    }
  }
  replace_file_atomic(path, [&](const std::string& tmp) { module_.save(tmp); });
}

}  // namespace rdprune
