#include "weight_uses.h"

#include <string>
#include <unordered_map>
#include <unordered_set>

namespace rdprune {
namespace {

// Where a layer's weights lie in its parameter's storage: [begin, end) in elements.
struct Extent {
  size_t layer;
  int64_t begin;
  int64_t end;
};

// The elements a tensor spans in its storage.
std::pair<int64_t, int64_t> span_of(const torch::Tensor& tensor) {
  int64_t last = tensor.storage_offset();
  for (int64_t d = 0; d < tensor.dim(); ++d) last += (tensor.size(d) - 1) * tensor.stride(d);
  return {tensor.storage_offset(), last + 1};
}

struct Observation {
  std::unordered_map<const void*, std::vector<Extent>> layers_of_storage;  // StorageImpl -> layers
  std::vector<int> depth;                                                  // uses in flight per layer
  const WeightUseVisitor* visit = nullptr;
};

thread_local Observation* active = nullptr;

// What a use's start saw: its inputs are kept here, since an interpreter's stack holds the
// outputs in their place by the time the call ends.
struct Use : at::ObserverContext {
  Use(std::vector<size_t> layers, const at::RecordFunction& call, size_t argument)
      : layers(std::move(layers)) {
    use.op = call.name();
    use.inputs.assign(call.inputs().begin(), call.inputs().end());
    use.weight_input = argument;
  }
  std::vector<size_t> layers;
  WeightUse use;
};

bool is_weight_op(const std::string& name) {
  static const std::unordered_set<std::string> ops = {"aten::conv1d",
                                                      "aten::conv2d",
                                                      "aten::conv3d",
                                                      "aten::conv_transpose1d",
                                                      "aten::conv_transpose2d",
                                                      "aten::conv_transpose3d",
                                                      "aten::convolution",
                                                      "aten::_convolution",
                                                      "aten::mkldnn_convolution",
                                                      "aten::linear",
                                                      "aten::addmm",
                                                      "aten::mm",
                                                      "aten::matmul"};
  return ops.count(name) > 0;
}

// The layers whose weights an argument of `call` reads, and that argument's index.
std::vector<size_t> layers_read(const Observation& state, const at::RecordFunction& call, size_t& argument) {
  std::vector<size_t> found;
  for (argument = 0; argument < call.inputs().size(); ++argument) {
    const auto& input = call.inputs()[argument];
    if (!input.isTensor() || !input.toTensor().has_storage()) continue;
    const torch::Tensor& tensor = input.toTensor();
    // Keyed by storage: the C++ frontend's Linear passes weight.t(), a view of the weight.
    const auto it = state.layers_of_storage.find(tensor.storage().unsafeGetStorageImpl());
    if (it == state.layers_of_storage.end()) continue;
    const auto [begin, end] = span_of(tensor);
    for (const auto& extent : it->second) {
      if (extent.begin < end && begin < extent.end) found.push_back(extent.layer);
    }
    if (!found.empty()) break;
  }
  return found;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& call) {
  Observation* state = active;
  if (state == nullptr || !is_weight_op(call.name())) return nullptr;
  size_t argument = 0;
  std::vector<size_t> layers = layers_read(*state, call, argument);
  if (layers.empty()) return nullptr;
  for (size_t layer : layers) ++state->depth[layer];
  return std::make_unique<Use>(std::move(layers), call, argument);
}

void on_end(const at::RecordFunction& call, at::ObserverContext* context) {
  Observation* state = active;
  if (state == nullptr || context == nullptr) return;
  auto* use = static_cast<Use*>(context);
  std::vector<size_t> outermost;
  for (size_t layer : use->layers) {
    if (--state->depth[layer] == 0) outermost.push_back(layer);
  }
  const auto& outputs = call.outputs();
  if (outermost.empty() || outputs.empty() || !outputs[0].isTensor() || outputs[0].toTensor().dim() == 0)
    return;
  use->use.output = outputs[0].toTensor();
  (*state->visit)(outermost, use->use);
}

}  // namespace

const torch::Tensor* WeightUse::activation() const {
  if (weight_input == 0 || weight_input > inputs.size() || !inputs[weight_input - 1].isTensor())
    return nullptr;
  return &inputs[weight_input - 1].toTensor();
}

bool WeightUse::transposed_convolution() const {
  if (op.rfind("aten::conv_transpose", 0) == 0) return true;
  // convolution(input, weight, bias, stride, padding, dilation, transposed, ...)
  const size_t transposed = weight_input + 5;
  return (op == "aten::convolution" || op == "aten::_convolution") && inputs.size() > transposed &&
         inputs[transposed].isBool() && inputs[transposed].toBool();
}

void observe_weight_uses(const std::vector<PrunableLayer>& layers, const WeightUseVisitor& visit,
                         const std::function<void()>& body) {
  Observation state;
  state.depth.assign(layers.size(), 0);
  state.visit = &visit;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto [begin, end] = span_of(layers[i].weight);
    state.layers_of_storage[layers[i].weight.storage().unsafeGetStorageImpl()].push_back({i, begin, end});
  }
  Observation* outer = active;
  active = &state;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_start, on_end).needsInputs(true).needsOutputs(true));
  try {
    body();
  } catch (...) {
    at::removeCallback(handle);
    active = outer;
    throw;
  }
  at::removeCallback(handle);
  active = outer;
}

}  // namespace rdprune
