#include "script_channels.h"

#include "script_stages.h"

#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

namespace rdprune {
namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

std::string kind_of(const Node* node) {
  return node->kind().toQualString();
}

bool is_convolution(const std::string& kind) {
  return kind == "aten::conv1d" || kind == "aten::conv2d" || kind == "aten::conv3d";
}

std::optional<int64_t> constant_int(const Value* value) {
  const auto constant = torch::jit::toIValue(value);
  if (!constant || !constant->isInt()) return std::nullopt;
  return constant->toInt();
}

bool is_none(const Value* value) {
  const auto constant = torch::jit::toIValue(value);
  return constant && constant->isNone();
}

// Ops that carry every channel through on its own: activations, dropout, pooling, copies.
bool passes_channels(const std::string& kind) {
  static const std::unordered_set<std::string> ops = {"aten::relu",
                                                      "aten::relu_",
                                                      "aten::relu6",
                                                      "aten::hardtanh",
                                                      "aten::hardtanh_",
                                                      "aten::leaky_relu",
                                                      "aten::leaky_relu_",
                                                      "aten::elu",
                                                      "aten::elu_",
                                                      "aten::gelu",
                                                      "aten::silu",
                                                      "aten::silu_",
                                                      "aten::hardswish",
                                                      "aten::hardswish_",
                                                      "aten::sigmoid",
                                                      "aten::sigmoid_",
                                                      "aten::tanh",
                                                      "aten::tanh_",
                                                      "aten::dropout",
                                                      "aten::dropout_",
                                                      "aten::feature_dropout",
                                                      "aten::max_pool1d",
                                                      "aten::max_pool2d",
                                                      "aten::max_pool3d",
                                                      "aten::avg_pool1d",
                                                      "aten::avg_pool2d",
                                                      "aten::avg_pool3d",
                                                      "aten::adaptive_avg_pool1d",
                                                      "aten::adaptive_avg_pool2d",
                                                      "aten::adaptive_avg_pool3d",
                                                      "aten::adaptive_max_pool2d",
                                                      "aten::contiguous",
                                                      "aten::clone"};
  return ops.count(kind) > 0;
}

// Uses that read a tensor's shape, not its values.
bool reads_shape_only(const std::string& kind) {
  return kind == "aten::size" || kind == "aten::dim" || kind == "prim::shape";
}

// Where a group's channels sit in the tensor being followed: on axis 1 (a convolution's output),
// or last, after a linear layer or a flatten.
enum class Layout { kChannelsFirst, kFeaturesLast };

class ChannelTracer {
 public:
  ChannelTracer(const torch::jit::Module& module, std::shared_ptr<Graph> graph,
                const std::vector<PrunableLayer>& layers)
      : module_(module), graph_(std::move(graph)), layers_(layers) {
    record(graph_->block());
  }

  ScriptChannels trace() {
    ScriptChannels found;
    for (const Node* node : graph_->block()->nodes()) {
      const std::string kind = kind_of(node);
      if (!is_convolution(kind) && kind != "aten::linear") continue;
      const auto layer = layer_weight(node->input(1));
      if (!layer) continue;
      const std::string& name = layers_[*layer].name;
      ChannelGroup group{name, layers_[*layer].weight.size(0), {{name + ".weight", 0, 1}}};
      std::string reason = producer_problem(node, *layer);
      if (reason.empty()) {
        if (holds_tensor(node->input(2))) group.slices.push_back({path_of(node->input(2)), 0, 1});
        const Layout layout = is_convolution(kind) ? Layout::kChannelsFirst : Layout::kFeaturesLast;
        reason = follow(node->output(), layout, group);
      }
      if (reason.empty() && readers(group) == 0) reason = "no layer reads its channels";
      if (reason.empty()) {
        found.groups.push_back(std::move(group));
      } else {
        found.unresolved.push_back(name + ": " + reason);
      }
      seen_.insert(*layer);
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (seen_.count(i) == 0 && (layers_[i].type.rfind("conv", 0) == 0 || layers_[i].type == "linear"))
        found.unresolved.push_back(layers_[i].name +
                                   ": not called as a convolution or linear layer at the "
                                   "top level of forward (inside control flow?)");
    }
    return found;
  }

 private:
  // Attribute paths of prim::GetAttr results, e.g. "layer1.0.conv1.weight", and how many calls read
  // each layer's weight.
  void record(const Block* block) {
    for (const Node* node : block->nodes()) {
      record_attribute_path(node, graph_->inputs()[0], paths_);
      const std::string kind = kind_of(node);
      if ((is_convolution(kind) || kind == "aten::linear") && node->inputs().size() > 1) {
        if (const auto layer = layer_weight(node->input(1))) ++calls_[*layer];
      }
      for (const Block* inner : node->blocks()) record(inner);
    }
  }

  // Whether the value is an attribute of the module that holds a tensor (not None).
  bool holds_tensor(const Value* value) const {
    const std::string path = path_of(value);
    return !path.empty() && attribute_at(module_, path).isTensor();
  }

  std::string path_of(const Value* value) const {
    const auto found = paths_.find(value);
    return found == paths_.end() ? "" : found->second;
  }

  // The prunable layer whose whole `weight` the value is.
  std::optional<size_t> layer_weight(const Value* value) const {
    const std::string path = path_of(value);
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (path == layers_[i].name + ".weight" && layers_[i].row_begin == 0 &&
          layers_[i].weight.sizes() == layers_[i].parameter.sizes())
        return i;
    }
    return std::nullopt;
  }

  int64_t calls(size_t layer) const {
    const auto found = calls_.find(layer);
    return found == calls_.end() ? 0 : found->second;
  }

  std::string producer_problem(const Node* node, size_t layer) const {
    if (calls(layer) != 1) return fmt::format("its weight is read by {} calls", calls(layer));
    if (is_convolution(kind_of(node)) && constant_int(node->input(6)) != std::optional<int64_t>(1))
      return "a grouped or depthwise convolution: its channels are tied to its inputs'";
    if (!is_none(node->input(2)) && path_of(node->input(2)).empty()) return "its bias is computed";
    return "";
  }

  static size_t readers(const ChannelGroup& group) {
    size_t count = 0;
    for (const auto& slice : group.slices) count += slice.dim == 1 ? 1 : 0;
    return count;
  }

  // Follows the tensor `value` holding the group's channels to every layer that reads them; the
  // reason they cannot be removed, or "" when they can.
  std::string follow(const Value* value, Layout layout, ChannelGroup& group) {
    for (const auto& use : value->uses()) {
      const Node* user = use.user;
      const std::string kind = kind_of(user);
      if (reads_shape_only(kind)) continue;
      if (user->kind() == c10::prim::Return && user->owningBlock() == graph_->block())
        return "its channels are the model's outputs";
      if (user->owningBlock() != graph_->block()) return "read by " + kind + " inside control flow";
      std::string reason = use.offset == 0 ? follow_into(user, kind, layout, group) : not_followed(kind);
      if (!reason.empty()) return reason;
    }
    return "";
  }

  std::string follow_into(const Node* user, const std::string& kind, Layout layout, ChannelGroup& group) {
    if (user->outputs().size() != 1 && !is_convolution(kind) && kind != "aten::linear")
      return "read by " + kind + ", which has several outputs";
    if (kind == "aten::batch_norm") {
      for (size_t i = 1; i <= 4; ++i) {
        if (is_none(user->input(i))) continue;
        if (path_of(user->input(i)).empty()) return "a batch norm whose parameters are computed";
        if (holds_tensor(user->input(i))) group.slices.push_back({path_of(user->input(i)), 0, 1});
      }
      return follow(user->output(), layout, group);
    }
    if (passes_channels(kind)) return follow(user->output(), layout, group);
    if (kind == "aten::flatten") {
      if (constant_int(user->input(1)) != std::optional<int64_t>(1) ||
          constant_int(user->input(2)) != std::optional<int64_t>(-1))
        return "flattened other than from axis 1 to the last";
      return follow(user->output(), Layout::kFeaturesLast, group);
    }
    if (is_convolution(kind) || kind == "aten::linear") return add_reader(user, kind, layout, group);
    return not_followed(kind);
  }

  static std::string not_followed(const std::string& kind) {
    return "read by " + kind +
           ", which this analysis does not follow (a residual addition or a concatenation ties channels "
           "across layers)";
  }

  std::string add_reader(const Node* user, const std::string& kind, Layout layout, ChannelGroup& group) {
    const auto layer = layer_weight(user->input(1));
    if (!layer) return "read by a " + kind + " whose weight is not a prunable layer's";
    if (calls(*layer) != 1) return "read by " + layers_[*layer].name + ", which is called more than once";
    const int64_t inputs = layers_[*layer].weight.size(1);
    const std::string path = layers_[*layer].name + ".weight";
    if (is_convolution(kind)) {
      if (layout != Layout::kChannelsFirst)
        return "read by convolution " + layers_[*layer].name + " after a flatten";
      if (constant_int(user->input(6)) != std::optional<int64_t>(1) || inputs != group.channels)
        return "read by " + layers_[*layer].name + ", a grouped or depthwise convolution";
      group.slices.push_back({path, 1, 1});
      return "";
    }
    if (layout != Layout::kFeaturesLast)
      return "read by linear layer " + layers_[*layer].name + " along another axis";
    if (inputs % group.channels != 0)
      return fmt::format("read by {} with {} inputs, not a multiple of {} channels", layers_[*layer].name,
                         inputs, group.channels);
    group.slices.push_back({path, 1, inputs / group.channels});
    return "";
  }

  const torch::jit::Module& module_;
  std::shared_ptr<Graph> graph_;
  const std::vector<PrunableLayer>& layers_;
  AttributePaths paths_;
  std::map<size_t, int64_t> calls_;
  std::unordered_set<size_t> seen_;
};

// The graph with the branches that the module's own boolean attributes decide taken: `if
// self.use_res_connect:` becomes the code it runs. (`training` stays open: the branches it decides
// hold batch-norm bookkeeping, not the channels' path.)
void fold_module_flags(const torch::jit::Module& module, std::shared_ptr<Graph>& graph) {
  AttributePaths paths;
  std::vector<std::pair<Node*, std::string>> flags;
  for (Node* node : graph->block()->nodes()) {
    const std::string path = record_attribute_path(node, graph->inputs()[0], paths);
    if (!path.empty() && node->s(c10::attr::name) != "training" &&
        node->output()->type()->kind() == c10::TypeKind::BoolType)
      flags.emplace_back(node, path);
  }
  for (const auto& [node, path] : flags) {
    const c10::IValue value = attribute_at(module, path);
    if (!value.isBool()) continue;
    torch::jit::WithInsertPoint point(node);
    node->output()->replaceAllUsesWith(graph->insertConstant(value));
  }
  torch::jit::ConstantPropagation(graph);
  torch::jit::EliminateDeadCode(graph);
}

}  // namespace

ScriptChannels find_script_channels(const torch::jit::Module& module,
                                    const std::vector<PrunableLayer>& layers) {
  const auto method = module.find_method("forward");
  if (!method) return {{}, {"the model has no forward method to analyse"}};
  std::shared_ptr<Graph> graph = method->graph()->copy();
  torch::jit::Inline(*graph);
  fold_module_flags(module, graph);
  return ChannelTracer(module, graph, layers).trace();
}

}  // namespace rdprune
