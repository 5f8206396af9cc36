// Layer census: one forward pass under a thread-local RecordFunction observer. Each aten
// convolution/linear call with an argument viewing a prunable weight counts as a use of that
// layer; its output size gives the multiply-accumulates per weight. Calls nested inside a matched
// call (aten::conv2d -> aten::convolution -> ...) are the same use and are skipped.
#include <ATen/record_function.h>

#include <unordered_map>
#include <unordered_set>

#include "network_impl.h"
#include "rdprune/error.h"
#include "rdprune/text.h"

namespace rdprune {
namespace {

struct CensusState {
  std::unordered_map<const void*, size_t> layer_of_weight;  // weight StorageImpl -> layer index
  std::vector<int64_t> out_rows;                            // weight.size(0) per layer
  std::vector<int> depth;                                   // matched calls in flight per layer
  std::vector<int64_t> calls;
  std::vector<double> flops_per_weight;
  int64_t batch = 1;
};

thread_local CensusState* active_census = nullptr;

struct MatchedCall : at::ObserverContext {
  explicit MatchedCall(size_t layer) : layer(layer) {}
  size_t layer;
};

bool is_weight_op(const char* name) {
  static const std::unordered_set<std::string> ops = {
      "aten::conv2d", "aten::convolution", "aten::_convolution", "aten::linear",
      "aten::addmm",  "aten::mm",          "aten::matmul",       "aten::mkldnn_convolution"};
  return ops.count(name) > 0;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  CensusState* state = active_census;
  if (state == nullptr || !is_weight_op(fn.name())) return nullptr;
  for (const auto& input : fn.inputs()) {
    if (!input.isTensor() || !input.toTensor().has_storage()) continue;
    // Keyed by storage: the C++ frontend's Linear passes weight.t(), a view of the weight.
    const auto it = state->layer_of_weight.find(input.toTensor().storage().unsafeGetStorageImpl());
    if (it == state->layer_of_weight.end()) continue;
    ++state->depth[it->second];
    return std::make_unique<MatchedCall>(it->second);
  }
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* context) {
  CensusState* state = active_census;
  if (state == nullptr || context == nullptr) return;
  const size_t layer = static_cast<MatchedCall*>(context)->layer;
  if (--state->depth[layer] > 0) return;  // nested call of a use already being counted
  const auto& outputs = fn.outputs();
  if (outputs.empty() || !outputs[0].isTensor()) return;
  const torch::Tensor& out = outputs[0].toTensor();
  state->calls[layer] += 1;
  // Each weight of output row r meets every output position of row r once per sample.
  state->flops_per_weight[layer] +=
      static_cast<double>(out.numel()) / static_cast<double>(state->batch * state->out_rows[layer]);
}

// A forward pass whose failure inside LibTorch (a shape the model cannot take) is an Error naming
// the input, in one line; a TorchScript model's own errors name its file already.
torch::Tensor forward_or_explain(Network& network, const torch::Tensor& input) {
  try {
    return network.forward(input);
  } catch (const c10::Error& e) {
    const std::string reason = e.what_without_backtrace();
    throw Error("forward pass failed on input " + format_shape(input.sizes().vec()) + " (" +
                reason.substr(0, reason.find('\n')) + ")");
  }
}

}  // namespace

std::vector<LayerInfo> layer_census(Network& network, const std::vector<int64_t>& input_shape) {
  const auto& layers = network.layers();
  CensusState state;
  state.out_rows.resize(layers.size());
  state.depth.assign(layers.size(), 0);
  state.calls.assign(layers.size(), 0);
  state.flops_per_weight.assign(layers.size(), 0.0);
  for (size_t i = 0; i < layers.size(); ++i) {
    state.layer_of_weight[layers[i].weight.storage().unsafeGetStorageImpl()] = i;
    state.out_rows[i] = layers[i].weight.size(0);
  }
  if (!input_shape.empty()) {
    torch::NoGradGuard no_grad;
    network.set_training(false);
    std::vector<int64_t> shape = {1};
    shape.insert(shape.end(), input_shape.begin(), input_shape.end());
    const auto device = layers.empty() ? torch::Device(torch::kCPU) : layers[0].weight.device();
    const torch::Tensor input = torch::zeros(shape, torch::TensorOptions().device(device));
    active_census = &state;
    auto handle = at::addThreadLocalCallback(
        at::RecordFunctionCallback(on_start, on_end).needsInputs(true).needsOutputs(true));
    try {
      forward_or_explain(network, input);
    } catch (...) {
      at::removeCallback(handle);
      active_census = nullptr;
      throw;
    }
    at::removeCallback(handle);
    active_census = nullptr;
  }
  std::vector<LayerInfo> infos;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& layer = layers[i];
    LayerInfo info;
    info.name = layer.name;
    info.type = layer.type;
    info.shape = layer.weight.sizes().vec();
    info.weights = layer.weight.numel();
    info.calls = input_shape.empty() ? 0 : state.calls[i];
    info.flops_per_weight = input_shape.empty() ? -1.0 : state.flops_per_weight[i];
    const auto& mask = i < network.masks().size() ? network.masks()[i] : torch::Tensor();
    const int64_t pruned = mask.defined() ? mask.numel() - mask.sum().item<int64_t>()
                                          : (layer.weight == 0).sum().item<int64_t>();
    info.sparsity = info.weights > 0 ? static_cast<double>(pruned) / info.weights : 0.0;
    infos.push_back(std::move(info));
  }
  return infos;
}

void check_logits(Network& network, const std::vector<int64_t>& input_shape, int64_t num_classes) {
  torch::NoGradGuard no_grad;
  network.set_training(false);
  std::vector<int64_t> shape = {2};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  const auto device =
      network.layers().empty() ? torch::Device(torch::kCPU) : network.layers()[0].weight.device();
  const torch::Tensor output =
      forward_or_explain(network, torch::zeros(shape, torch::TensorOptions().device(device)));
  if (output.dim() != 2 || output.size(0) != 2) {
    throw Error("model output has shape " + std::string(c10::str(output.sizes())) +
                ", expected [batch, classes] logits");
  }
  if (num_classes > 0 && output.size(1) != num_classes) {
    throw Error("model outputs " + std::to_string(output.size(1)) + " classes but the dataset has " +
                std::to_string(num_classes));
  }
}

}  // namespace rdprune
