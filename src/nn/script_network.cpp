#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "network_impl.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/text.h"
#include "rdprune/torch_reason.h"

namespace rdprune {
namespace {

// Masks saved by rdprune travel as `<parameter>_mask` buffers beside the parameter
// (torch.nn.utils.prune's name: `weight_mask`), one for the q, k and v of an in-projection.
std::string mask_buffer(const std::string& attribute) {
  return attribute + "_mask";
}

// Serialised in memory first: torch's file writer aborts the process when the disk fills (its
// destructor throws), where write_file_atomic reports the error and removes the partial file.
void write_module(const torch::jit::Module& module, const std::string& path) {
  std::ostringstream bytes;
  module.save(bytes);
  write_file_atomic(path, bytes.str());
}

torch::jit::Module submodule(const torch::jit::Module& root, const std::string& path) {
  for (const auto& item : root.named_modules()) {
    if (item.name == path) return item.value;
  }
  throw Error("no module " + path);  // not reached: the path came from named_parameters()
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

ScriptNetwork::ScriptNetwork(torch::jit::Module module, const std::string& path, const LoadOptions& options)
    : module_(std::move(module)), path_(path), options_(options) {
  meta_.arch = "torchscript";
  for (auto& site : find_script_layers(module_, path)) {
    torch::jit::Module owner = submodule(module_, site.owner);
    if (is_embedding_type(site.type) && !options.prune_embeddings) {
      const std::string buffer = mask_buffer(site.attribute);
      if (owner.hasattr(buffer) && owner.attr(buffer).isTensor() &&
          !owner.attr(buffer).toTensor().eq(1).all().item<bool>()) {
        throw Error(path + ": holds a mask for embedding " + site.name +
                    ", which is a prunable layer only when embeddings are pruned");
      }
      continue;
    }
    const torch::Tensor parameter = owner.attr(site.attribute).toTensor();
    layers_.push_back(
        {site.name, site.type, parameter.narrow(0, site.row_begin, site.rows), parameter, site.row_begin});
    owners_.push_back(owner);
    sites_.push_back(std::move(site));
  }
  masks_.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string buffer = mask_buffer(sites_[i].attribute);
    if (!owners_[i].hasattr(buffer)) continue;
    const c10::IValue saved = owners_[i].attr(buffer);
    if (!saved.isTensor() || saved.toTensor().sizes() != layers_[i].parameter.sizes()) {
      throw Error(path + ": layer " + layers_[i].name + ": " + buffer +
                  " does not match the shape of the weight it masks");
    }
    const torch::Tensor mask = layers_[i].rows_of(saved.toTensor());
    // All ones prunes nothing; anything else is checked (0 and 1 only) and held.
    if (mask.eq(1).all().item<bool>()) continue;
    try {
      set_mask(i, mask);
    } catch (const Error& e) {
      throw Error(path + ": " + e.what());
    }
  }
  // Suffix execution where the graph allows it; a graph it cannot cut runs whole, as before.
  try {
    std::vector<torch::Tensor> weights;
    for (const auto& layer : layers_) weights.push_back(layer.parameter);
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
  try {
    channels_ = find_script_channels(module_, layers_);
  } catch (const std::exception& e) {
    channels_ = {{}, {"the forward graph could not be analysed: " + torch_reason(e)}};
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
  recalibration_ = std::make_unique<ScriptBatchNorms>(module_, path_);
  if (recalibration_->empty()) {
    recalibration_.reset();
    return false;
  }
  recalibration_->begin();
  return true;
}

void ScriptNetwork::batch_norm_recalibration_step() {
  if (recalibration_) recalibration_->step();
}

void ScriptNetwork::end_batch_norm_recalibration() {
  if (recalibration_) recalibration_->end();
  recalibration_.reset();
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
    // Every prunable parameter gets the buffer: TorchScript may share one class type between
    // several Conv2d instances, and each instance of a type must carry the same attributes.
    std::map<std::pair<const void*, std::string>, torch::Tensor> buffers;
    for (size_t i = 0; i < layers_.size(); ++i) {
      auto& whole = buffers[{owners_[i]._ivalue().get(), sites_[i].attribute}];
      if (!whole.defined()) whole = torch::ones_like(layers_[i].parameter, torch::kBool);
      if (masks_[i].defined()) layers_[i].rows_of(whole).copy_(masks_[i]);
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
      owners_[i].register_buffer(mask_buffer(sites_[i].attribute),
                                 buffers.at({owners_[i]._ivalue().get(), sites_[i].attribute}));
    }
  }
  write_module(module_, path);
}

void ScriptNetwork::save_dense(const std::string& path) {
  apply_masks();
  std::set<std::string> names;
  for (const auto& site : sites_) names.insert(mask_buffer(site.attribute));
  // A copy with its own class types, from which the mask buffers are removed: first from every
  // object, then from each type the objects share.
  torch::jit::Module copy = module_.clone();
  std::vector<std::pair<c10::ClassTypePtr, std::string>> types;
  for (const auto& item : copy.named_modules()) {
    for (const auto& name : names) {
      if (!item.value.hasattr(name)) continue;
      item.value._ivalue()->unsafeRemoveAttr(name);
      const std::pair<c10::ClassTypePtr, std::string> entry{item.value.type(), name};
      if (std::find(types.begin(), types.end(), entry) == types.end()) types.push_back(entry);
    }
  }
  for (const auto& [type, name] : types) type->unsafeRemoveAttribute(name);
  write_module(copy, path);
}

}  // namespace rdprune
