#include <algorithm>
#include <sstream>
#include <unordered_set>

#include "network_impl.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/text.h"

namespace rdprune {
namespace {

constexpr const char* kMaskBuffer = "weight_mask";

// Serialised in memory first: torch's file writer aborts the process when the disk fills (its
// destructor throws), where write_file_atomic reports the error and removes the partial file.
void write_module(const torch::jit::Module& module, const std::string& path) {
  std::ostringstream bytes;
  module.save(bytes);
  write_file_atomic(path, bytes.str());
}

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

// The reason of a TorchScript interpreter failure without its traceback: the text after the last
// "Error: " of the message (e.g. "RuntimeError: Given groups=1, ..."), else its first line.
std::string interpreter_reason(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  const size_t at = text.rfind("Error: ");
  if (at != std::string::npos) {
    const size_t start = text.rfind('\n', at);
    text = text.substr(start == std::string::npos ? 0 : start + 1);
  }
  text = text.substr(0, text.find('\n'));
  return text.size() > 300 ? text.substr(0, 300) + "..." : text;
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
    if (tensor.numel() == 0) continue;  // nothing to prune, e.g. Linear(0, n)
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
    // All ones prunes nothing; anything else is checked (0 and 1 only) and held.
    if (mask.toTensor().eq(1).all().item<bool>()) continue;
    try {
      set_mask(i, mask.toTensor());
    } catch (const Error& e) {
      throw Error(path + ": " + e.what());
    }
  }
  // Suffix execution where the graph allows it; a graph it cannot cut runs whole, as before.
  try {
    std::vector<torch::Tensor> weights;
    for (const auto& layer : layers_) weights.push_back(layer.weight);
    stages_ = std::make_unique<ScriptStages>(module_, weights);
    for (size_t i = 0; i < layers_.size(); ++i) {
      layer_stages_.push_back(stages_->stage_of(i));
      layer_last_stages_.push_back(stages_->last_stage_of(i));
    }
  } catch (const std::exception&) {
    stages_.reset();
    layer_stages_.clear();
    layer_last_stages_.clear();
  }
}

torch::Tensor ScriptNetwork::forward_impl(const torch::Tensor& input) {
  c10::IValue output;
  try {
    output = module_.forward({input});
  } catch (const std::exception& e) {
    throw Error(path_ + ": forward pass failed on input " + format_shape(input.sizes().vec()) + " (" +
                interpreter_reason(e) + ")");
  }
  if (!output.isTensor()) {
    throw Error(path_ + ": model output is a " + output.tagKind() + ", expected a logits tensor");
  }
  return output.toTensor();
}

StageValues ScriptNetwork::run_stages_impl(size_t first, size_t last, StageValues input) {
  if (num_stages() == 1) return Network::run_stages_impl(first, last, std::move(input));
  const std::string shape = input.empty() ? "?" : format_shape(input.front().sizes().vec());
  try {
    return stages_->run(module_, first, last, std::move(input));
  } catch (const std::exception& e) {
    throw Error(path_ + ": forward pass failed on input " + shape + " (" + interpreter_reason(e) + ")");
  }
}

bool ScriptNetwork::begin_batch_norm_recalibration() {
  throw Error(path_ + ": batch-norm recalibration is not supported for TorchScript models");
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
  write_module(module_, path);
}

void ScriptNetwork::save_dense(const std::string& path) {
  apply_masks();
  // A copy with its own class types, from which the mask buffers are removed: first from every
  // object, then from each type the objects share.
  torch::jit::Module copy = module_.clone();
  std::vector<c10::ClassTypePtr> types;
  for (const auto& item : copy.named_modules()) {
    if (!item.value.hasattr(kMaskBuffer)) continue;
    item.value._ivalue()->unsafeRemoveAttr(kMaskBuffer);
    if (std::find(types.begin(), types.end(), item.value.type()) == types.end())
      types.push_back(item.value.type());
  }
  for (const auto& type : types) type->unsafeRemoveAttribute(kMaskBuffer);
  write_module(copy, path);
}

}  // namespace rdprune
