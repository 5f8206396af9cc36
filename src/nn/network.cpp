#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "network_impl.h"
#include "rdprune/atomic_file.h"
#include "rdprune/child_probe.h"
#include "rdprune/error.h"
#include "rdprune/torch_reason.h"
#include "rdprune/zip_check.h"

namespace rdprune {
namespace {

// "6x1x5x5"
std::string shape_text(c10::IntArrayRef shape) {
  return fmt::format("{}", fmt::join(shape, "x"));
}

}  // namespace

// ---- Network: masks ---------------------------------------------------------------------------

void Network::set_mask(size_t layer, const torch::Tensor& mask) {
  if (layer >= layers_.size()) throw Error("mask for layer index " + std::to_string(layer) + " out of range");
  const auto& weight = layers_[layer].weight;
  if (mask.defined() && mask.sizes() != weight.sizes()) {
    throw Error("mask for layer " + layers_[layer].name + " has the wrong shape: " +
                shape_text(mask.sizes()) + ", its weight is " + shape_text(weight.sizes()));
  }
  // A mask keeps a weight or prunes it: 0.5 or NaN would be read as "keep" and hide the damage.
  if (mask.defined() && mask.scalar_type() != torch::kBool &&
      !mask.eq(0).logical_or(mask.eq(1)).all().item<bool>()) {
    throw Error("mask for layer " + layers_[layer].name + " holds values other than 0 and 1");
  }
  masks_.resize(layers_.size());
  masks_[layer] = mask.defined() ? mask.to(weight.device(), torch::kBool) : torch::Tensor();
}

void Network::set_criterion(const std::string& name, std::vector<torch::Tensor> input_norms) {
  if (name == "wanda" && input_norms.size() != layers_.size())
    throw Error("wanda: one input-norm tensor per layer expected");
  criterion_ = name;
  input_norms_ = name == "wanda" ? std::move(input_norms) : std::vector<torch::Tensor>{};
}

void Network::apply_masks() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < masks_.size(); ++i) {
    if (masks_[i].defined()) layers_[i].weight.mul_(masks_[i]);
  }
}

void Network::mask_gradients() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < masks_.size(); ++i) {
    const auto& grad = layers_[i].parameter.grad();
    if (masks_[i].defined() && grad.defined()) layers_[i].rows_of(grad).mul_(masks_[i]);
  }
}

// ---- metadata ---------------------------------------------------------------------------------

std::string meta_to_json(const ModelMeta& meta) {
  nlohmann::json json = {{"schema", kCheckpointSchema},     {"arch", meta.arch},
                         {"input_shape", meta.input_shape}, {"num_classes", meta.num_classes},
                         {"dataset", meta.dataset},         {"mean", meta.normalization.mean},
                         {"std", meta.normalization.std}};
  if (!meta.widths.empty()) json["widths"] = meta.widths;
  return json.dump();
}

ModelMeta meta_from_json(const std::string& text, const std::string& path) {
  try {
    const auto json = nlohmann::json::parse(text);
    if (json.value("schema", "") != kCheckpointSchema) {
      throw Error(path + ": unsupported checkpoint schema '" + json.value("schema", "") + "', expected " +
                  kCheckpointSchema);
    }
    ModelMeta meta;
    meta.arch = json.at("arch").get<std::string>();
    meta.input_shape = json.at("input_shape").get<std::vector<int64_t>>();
    meta.num_classes = json.at("num_classes").get<int64_t>();
    meta.dataset = json.value("dataset", "");
    meta.normalization.mean = json.value("mean", std::vector<double>{});
    meta.normalization.std = json.value("std", std::vector<double>{});
    meta.widths = json.value("widths", std::map<std::string, int64_t>{});
    const auto& [mean, std] = meta.normalization;
    if (mean.size() != std.size() ||
        !std::all_of(std.begin(), std.end(), [](double s) { return std::isfinite(s) && s > 0; }) ||
        !std::all_of(mean.begin(), mean.end(), [](double m) { return std::isfinite(m); })) {
      throw Error(path + ": corrupt checkpoint metadata (normalisation: " + std::to_string(mean.size()) +
                  " means and " + std::to_string(std.size()) + " standard deviations, each finite and > 0)");
    }
    return meta;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": corrupt checkpoint metadata (" + e.what() + ")");
  }
}

// ---- native zoo networks ----------------------------------------------------------------------

NativeNetwork::NativeNetwork(const ModelMeta& meta, const LoadOptions& options) {
  meta_ = meta;
  if (meta.input_shape.size() != 3) throw UsageError("model input shape must be C,H,W");
  if (meta.input_shape[1] != meta.input_shape[2]) {
    throw UsageError("zoo models take square images, got " + std::to_string(meta.input_shape[1]) + "x" +
                     std::to_string(meta.input_shape[2]));
  }
  model_ =
      make_zoo_model({meta.arch, meta.input_shape[0], meta.input_shape[1], meta.num_classes, meta.widths});
  for (const auto& item : model_->named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    if (auto* conv = item.value()->as<torch::nn::Conv2dImpl>()) {
      layers_.push_back({item.key(), "conv2d", conv->weight, conv->weight});
    } else if (auto* linear = item.value()->as<torch::nn::LinearImpl>()) {
      layers_.push_back({item.key(), "linear", linear->weight, linear->weight});
    }
  }
  // After the weight matrices, so a checkpoint's masks keep their indices with or without them.
  for (const auto& name :
       options.prune_embeddings ? model_->position_embeddings() : std::vector<std::string>{}) {
    const torch::Tensor parameter = model_->named_parameters()[name];
    layers_.push_back({name, "pos_embedding", parameter, parameter});
  }
  masks_.resize(layers_.size());
  // Each layer belongs to the stage with the longest module prefix that names it.
  const auto& prefixes = model_->stage_prefixes();
  for (const auto& layer : layers_) {
    size_t stage = prefixes.size();
    size_t matched = 0;
    for (size_t s = 0; s < prefixes.size(); ++s) {
      for (const auto& prefix : prefixes[s]) {
        const bool names =
            !prefix.empty() && (layer.name == prefix || layer.name.rfind(prefix + ".", 0) == 0);
        if (names && prefix.size() > matched) {
          stage = s;
          matched = prefix.size();
        }
      }
    }
    if (stage == prefixes.size())
      throw Error("zoo model " + meta.arch + ": layer " + layer.name + " has no stage");
    layer_stages_.push_back(stage);
  }
}

void NativeNetwork::to(const torch::Device& device) {
  model_->to(device);
  for (auto& mask : masks_) {
    if (mask.defined()) mask = mask.to(device);
  }
}

bool NativeNetwork::begin_batch_norm_recalibration() {
  bool found = false;
  for (auto& module : model_->modules(/*include_self=*/false)) {
    if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
      bn->reset_running_stats();
      bn->options.momentum(c10::nullopt);  // cumulative moving average over the recalibration
      found = true;
    }
  }
  return found;
}

void NativeNetwork::end_batch_norm_recalibration() {
  for (auto& module : model_->modules(/*include_self=*/false)) {
    if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) bn->options.momentum(0.1);
  }
}

void NativeNetwork::write(const std::string& path, bool with_masks) {
  // Serialised in memory first: torch's file writer aborts the process when the disk fills (its
  // destructor throws), where write_file_atomic reports the error and removes the partial file.
  std::ostringstream bytes;
  {
    torch::serialize::OutputArchive archive;
    archive.write("rdprune_meta", c10::IValue(meta_to_json(meta_)));
    torch::serialize::OutputArchive weights;
    model_->save(weights);
    archive.write("model", weights);
    torch::serialize::OutputArchive masks;
    std::vector<std::string> masked;
    for (size_t i = 0; with_masks && i < masks_.size(); ++i) {
      if (!masks_[i].defined()) continue;
      masks.write("m" + std::to_string(i), masks_[i].cpu());
      masked.push_back(layers_[i].name);
    }
    archive.write("masks", masks);
    archive.write("rdprune_masked_layers", c10::IValue(nlohmann::json(masked).dump()));
    archive.save_to(bytes);
  }
  write_file_atomic(path, bytes.str());
}

void NativeNetwork::load_state(torch::serialize::InputArchive& archive, const std::string& path) {
  torch::serialize::InputArchive weights;
  if (!archive.try_read("model", weights)) throw Error(path + ": checkpoint has no weights");
  // Loading replaces each tensor, shape and all: the architecture's shapes are checked after.
  const auto shapes = [&] {
    std::vector<std::pair<std::string, std::vector<int64_t>>> out;
    for (const auto& item : model_->named_parameters())
      out.emplace_back(item.key(), item.value().sizes().vec());
    for (const auto& item : model_->named_buffers()) out.emplace_back(item.key(), item.value().sizes().vec());
    return out;
  };
  const auto expected = shapes();
  try {
    model_->load(weights);
  } catch (const c10::Error& e) {
    throw Error(path + ": weights do not match architecture " + meta_.arch + " (" +
                e.what_without_backtrace() + ")");
  }
  const auto loaded = shapes();
  for (size_t i = 0; i < expected.size(); ++i) {
    if (loaded[i].second != expected[i].second) {
      throw Error(fmt::format("{}: weights do not match architecture {} ({} has shape {}, expected {})", path,
                              meta_.arch, expected[i].first, shape_text(loaded[i].second),
                              shape_text(expected[i].second)));
    }
  }
  torch::serialize::InputArchive masks;
  if (!archive.try_read("masks", masks)) return;
  torch::Tensor beyond;  // a mask for a layer this network does not offer: an embedding's
  for (size_t i = layers_.size(); i < layers_.size() + model_->position_embeddings().size(); ++i) {
    if (masks.try_read("m" + std::to_string(i), beyond)) {
      throw Error(path +
                  ": holds a mask for a position embedding, which is a prunable layer only when "
                  "embeddings are pruned");
    }
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    torch::Tensor mask;
    if (!masks.try_read("m" + std::to_string(i), mask)) continue;
    try {
      set_mask(i, mask);
    } catch (const Error& e) {
      throw Error(path + ": " + e.what());
    }
  }
}

bool recalibrate_batch_norm(Network& network, const Dataset& data, int64_t batch_size) {
  if (!network.begin_batch_norm_recalibration()) return false;
  torch::NoGradGuard no_grad;
  const auto device =
      network.layers().empty() ? torch::Device(torch::kCPU) : network.layers()[0].weight.device();
  network.set_training(true);
  BatchLoader loader(data, batch_size, /*shuffle=*/false, /*seed=*/0);
  for (int64_t i = 0; i < loader.num_batches(); ++i) {
    network.forward(loader.get(i).images.to(device));
    network.batch_norm_recalibration_step();
  }
  network.set_training(false);
  network.end_batch_norm_recalibration();
  return true;
}

// ---- construction and loading -----------------------------------------------------------------

const std::vector<std::string>& zoo_architectures() {
  static const std::vector<std::string> names = {"mlp",   "lenet5",   "resnet20", "resnet32", "resnet56",
                                                 "vgg16", "resnet18", "resnet50", "vit"};
  return names;
}

std::unique_ptr<Network> create_network(const ModelMeta& meta) {
  return std::make_unique<NativeNetwork>(meta);
}

namespace {

// A model with NaN or infinite weights gives NaN outputs, curves and scores downstream; it is
// refused where it is read, with the layer named when a prunable one holds them. Buffers may hold
// infinities by design (a -inf attention mask, an observer's starting range), never NaN.
std::unique_ptr<Network> finite_only(std::unique_ptr<Network> network, const std::string& path) {
  torch::NoGradGuard no_grad;
  const auto finite = [](const torch::Tensor& t) {
    return !t.defined() || !t.is_floating_point() || torch::isfinite(t).all().item<bool>();
  };
  const auto not_nan = [](const torch::Tensor& t) {
    return !t.defined() || !t.is_floating_point() || !torch::isnan(t).any().item<bool>();
  };
  const auto parameters = network->parameters();
  if (!std::all_of(parameters.begin(), parameters.end(), finite)) {
    for (const auto& layer : network->layers()) {  // name the layer when a prunable one holds them
      if (!finite(layer.weight)) {
        throw Error(path + ": layer " + layer.name +
                    " has weights that are NaN or infinite; the model is damaged");
      }
    }
    throw Error(path + ": a parameter holds NaN or infinite values; the model is damaged");
  }
  const auto buffers = network->buffers();
  if (!std::all_of(buffers.begin(), buffers.end(), not_nan))
    throw Error(path + ": a buffer holds NaN values; the model is damaged");
  return network;
}

std::unique_ptr<Network> on_device(std::unique_ptr<Network> network, const torch::Device& device) {
  if (device != torch::Device(torch::kCPU)) network->to(device);
  return network;
}

}  // namespace

bool is_embedding_type(const std::string& type) {
  return type == "embedding" || type == "pos_embedding";
}

std::unique_ptr<Network> load_network(const std::string& path, const LoadOptions& options) {
  if (!std::filesystem::exists(path)) throw Error(path + ": model file does not exist");
  if (std::filesystem::is_directory(path)) throw Error(path + ": is a directory, expected a model file");
  check_regular_input(path);
  torch::serialize::InputArchive archive;
  try {
    check_zip_records(path);
    // LibTorch's importer crashes on some damaged archives: the file is read in a child first.
    const ChildReading trial = read_in_child([&] {
      torch::serialize::InputArchive().load_from(path, torch::Device(torch::kCPU));
      return std::string();
    });
    if (!trial.read)
      throw Error(trial.crashed ? "LibTorch crashed reading it (" + trial.reason + ")" : trial.reason);
    archive.load_from(path, torch::Device(torch::kCPU));
  } catch (const std::exception& e) {
    throw Error(path + ": not a rdprune checkpoint or TorchScript file (" + torch_reason(e) + ")");
  }
  c10::IValue meta_value;
  if (archive.try_read("rdprune_meta", meta_value) && meta_value.isString()) {
    std::unique_ptr<NativeNetwork> network;
    try {
      network = std::make_unique<NativeNetwork>(meta_from_json(meta_value.toStringRef(), path), options);
    } catch (const UsageError& e) {
      // Not the user's flags: the checkpoint's own record names a model this build cannot make.
      throw Error(path + ": checkpoint metadata describes no model this build can make (" + e.what() + ")");
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      // A record that asks for more than memory holds (a trillion classes, a huge input).
      throw Error(path + ": cannot build the model its metadata describes (" + torch_reason(e) + ")");
    }
    network->load_state(archive, path);
    return on_device(finite_only(std::move(network), path), options.device);
  }
  std::unique_ptr<Network> script;
  try {
    script =
        std::make_unique<ScriptNetwork>(torch::jit::load(path, torch::Device(torch::kCPU)), path, options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    // c10::Error, or the TorchScript compiler's report on a damaged archive's code.
    throw Error(path + ": cannot load TorchScript module (" + torch_reason(e) + ")");
  }
  return on_device(finite_only(std::move(script), path), options.device);
}

}  // namespace rdprune
