#include "script_channels.h"

#include "script_stages.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
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

std::optional<bool> constant_bool(const Value* value) {
  const auto constant = torch::jit::toIValue(value);
  if (!constant || !constant->isBool()) return std::nullopt;
  return constant->toBool();
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

// Where a group's channels sit in a tensor: on axis 1 (a convolution's output), or last, after a
// linear layer or a flatten.
enum class Layout { kChannelsFirst, kFeaturesLast };

// Where a group's channels sit in a tensor: their axis, the index of the first along it (more than
// 0 after a concatenation with other tensors before them) and how many channels the axis holds.
struct Place {
  Layout layout = Layout::kChannelsFirst;
  int64_t offset = 0;
  int64_t width = 0;
  bool operator==(const Place& other) const {
    return layout == other.layout && offset == other.offset && width == other.width;
  }
};

// Uses that read a tensor's shape, not its values.
bool reads_shape_only(const std::string& kind) {
  return kind == "aten::size" || kind == "aten::dim" || kind == "prim::shape";
}

// Whether a shape read takes the size of the channel axis (`x.size(1)`, or the last one after a
// linear layer), which a smaller model would change under the code that uses it.
bool reads_channel_count(const Node* node, Layout layout) {
  if (kind_of(node) != "aten::size" || node->inputs().size() < 2) return false;
  const auto dim = constant_int(node->input(1));
  if (!dim) return true;
  return layout == Layout::kChannelsFirst ? *dim == 1 : *dim == -1 || *dim == 1;
}

bool is_addition(const Node* node) {
  const std::string kind = kind_of(node);
  return (kind == "aten::add" || kind == "aten::add_") && node->inputs().size() == 3;
}

bool is_tensor(const Value* value) {
  return value->type()->cast<c10::TensorType>() != nullptr;
}

// The values that carry one set of channels: the outputs of its producing layers and what batch
// norms, element-wise ops, pooling, a flatten and additions make of them. An addition joins the
// channels of both its operands: their producers become one group (a residual connection).
struct Component {
  ChannelGroup group;
  std::vector<size_t> producers;
  std::vector<size_t> depthwise;  // depthwise convolutions that carry the channels through
  std::unordered_map<const Value*, Place> values;
  std::unordered_set<const Node*> nodes;    // taken ops and producing calls
  std::unordered_set<const Node*> reading;  // calls that read the channels (a call may do both)
  std::vector<const Value*> queue;
};

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
      if (!layer || assigned_.count(*layer) > 0) continue;
      Component component;
      component.group = {layers_[*layer].name, layers_[*layer].weight.size(0), {}};
      std::string reason = add_producer(component, node, *layer);
      while (reason.empty() && !component.queue.empty()) {
        const Value* value = component.queue.back();
        component.queue.pop_back();
        reason = visit(component, value);
      }
      if (reason.empty() && readers(component.group) == 0) reason = "no layer reads its channels";
      for (const size_t producer : component.producers) assigned_.insert(producer);
      for (const size_t carrier : component.depthwise) assigned_.insert(carrier);
      assigned_.insert(*layer);
      if (reason.empty()) {
        found.groups.push_back(std::move(component.group));
        continue;
      }
      if (component.producers.size() > 1)
        reason += " (their channels are tied: " + names(component.producers) + ")";
      for (const size_t producer : component.producers)
        found.unresolved.push_back(layers_[producer].name + ": " + reason);
      for (const size_t carrier : component.depthwise)
        found.unresolved.push_back(layers_[carrier].name + ": depthwise over channels kept whole: " + reason);
      if (component.producers.empty()) found.unresolved.push_back(layers_[*layer].name + ": " + reason);
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (assigned_.count(i) == 0 && (layers_[i].type.rfind("conv", 0) == 0 || layers_[i].type == "linear"))
        found.unresolved.push_back(
            layers_[i].name +
            ": not called as a convolution or linear layer at the top level of forward "
            "(inside control flow?)");
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

  std::string path_of(const Value* value) const {
    const auto found = paths_.find(value);
    return found == paths_.end() ? "" : found->second;
  }

  // Whether the value is an attribute of the module that holds a tensor (not None).
  bool holds_tensor(const Value* value) const {
    const std::string path = path_of(value);
    return !path.empty() && attribute_at(module_, path).isTensor();
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

  // Whether the call is a depthwise convolution of a prunable layer: one filter per input channel
  // (groups = input channels = output channels), so channel c of its output is made from channel c
  // of its input alone and both belong to one group.
  bool is_depthwise(const Node* node) const {
    if (!is_convolution(kind_of(node))) return false;
    const auto layer = layer_weight(node->input(1));
    const auto groups = constant_int(node->input(6));
    if (!layer || !groups || *groups <= 1) return false;
    const torch::Tensor& weight = layers_[*layer].weight;
    return weight.size(1) == 1 && weight.size(0) == *groups;
  }

  int64_t calls(size_t layer) const {
    const auto found = calls_.find(layer);
    return found == calls_.end() ? 0 : found->second;
  }

  std::string names(const std::vector<size_t>& producers) const {
    std::string text;
    for (const size_t producer : producers) text += (text.empty() ? "" : ", ") + layers_[producer].name;
    return text;
  }

  static size_t readers(const ChannelGroup& group) {
    size_t count = 0;
    for (const auto& slice : group.slices) count += slice.dim == 1 ? 1 : 0;
    return count;
  }

  // Puts `value` on the component's queue, its channels where `place` says.
  std::string enqueue(Component& component, const Value* value, Place place) {
    const auto [at, added] = component.values.emplace(value, place);
    if (added) {
      component.queue.push_back(value);
      return "";
    }
    if (at->second == place) return "";
    return at->second.layout != place.layout ? "its channels meet a flattened copy of themselves"
                                             : "its channels meet a copy of themselves at another position";
  }

  // The place of the group's channels in the tensor `value` in the component.
  static Place with_layout(Place place, Layout layout) {
    place.layout = layout;
    return place;
  }

  std::string add_producer(Component& component, const Node* node, size_t layer) {
    component.nodes.insert(node);
    if (calls(layer) != 1) return fmt::format("its weight is read by {} calls", calls(layer));
    const std::string kind = kind_of(node);
    if (is_convolution(kind) && constant_int(node->input(6)) != std::optional<int64_t>(1))
      return is_depthwise(node) ? "a depthwise convolution of channels that stay whole (its inputs')"
                                : "a grouped convolution: its channels are tied to its inputs'";
    if (!is_none(node->input(2)) && path_of(node->input(2)).empty()) return "its bias is computed";
    const int64_t channels = component.group.channels;
    if (layers_[layer].weight.size(0) != channels) return "it is added to a tensor of another channel count";
    const std::string& name = layers_[layer].name;
    component.group.slices.push_back({name + ".weight", 0, 1});
    if (holds_tensor(node->input(2))) component.group.slices.push_back({path_of(node->input(2)), 0, 1});
    component.producers.push_back(layer);
    const Layout layout = is_convolution(kind) ? Layout::kChannelsFirst : Layout::kFeaturesLast;
    return enqueue(component, node->output(), {layout, 0, channels});
  }

  // Where `value` comes from, and every use of it; the reason its channels cannot go, or "".
  std::string visit(Component& component, const Value* value) {
    const Place place = component.values.at(value);
    if (component.nodes.count(value->node()) == 0) {
      std::string reason = take(component, value->node(), place, /*from_output=*/true);
      if (!reason.empty()) return reason;
    }
    for (const auto& use : value->uses()) {
      const Node* user = use.user;
      const std::string kind = kind_of(user);
      const bool call = (is_convolution(kind) || kind == "aten::linear") && !is_depthwise(user);
      if (reads_shape_only(kind)) {
        if (reads_channel_count(user, place.layout)) return "its channel count is read (" + kind + ")";
        continue;
      }
      if ((call ? component.reading : component.nodes).count(user) > 0) continue;
      if (user->kind() == c10::prim::Return && user->owningBlock() == graph_->block())
        return "its channels are the model's outputs";
      if (user->owningBlock() != graph_->block()) return "read by " + kind + " inside control flow";
      const bool element = kind == "prim::ListConstruct" || (kind == "aten::append" && use.offset == 1);
      const bool operand = use.offset == 0 || (use.offset == 1 && is_addition(user));
      std::string reason = element    ? concatenate(component, value, user, place)
                           : !operand ? not_followed(kind)
                           : call     ? add_reader(component, user, kind, place)
                                      : take(component, user, place, /*from_output=*/false);
      if (!reason.empty()) return reason;
    }
    return "";
  }

  // Takes `node` into the component: its channel-carrying inputs and output join the queue.
  // `from_output`: reached from its output (a producer, or an op whose input carries them too).
  std::string take(Component& component, const Node* node, Place place, bool from_output) {
    const std::string kind = kind_of(node);
    if (is_depthwise(node)) return add_depthwise(component, node, place);
    if (from_output && (is_convolution(kind) || kind == "aten::linear")) {
      const auto layer = layer_weight(node->input(1));
      if (!layer) return "made by a " + kind + " whose weight is not a prunable layer's";
      return add_producer(component, node, *layer);
    }
    component.nodes.insert(node);
    if (node->kind() == c10::prim::Param) return "they are the model's inputs";
    if (node->outputs().size() != 1) return "read by " + kind + ", which has several outputs";
    if (kind == "aten::cat")
      return "tied to a concatenation's output, which the analysis follows from its inputs only";
    std::string reason;
    // Batch norms and pooling work on axis 1 of a [N, C, ...] tensor; after a linear layer the
    // channels are last, which is axis 1 only for [N, C]: not followed there.
    const bool spatial = kind == "aten::batch_norm" || kind.find("pool") != std::string::npos;
    if (spatial && place.layout != Layout::kChannelsFirst) return "read by " + kind + " after a linear layer";
    if (kind == "aten::batch_norm") {
      reason = add_batch_norm(component, node, place);
    } else if (kind == "aten::flatten") {
      if (constant_int(node->input(1)) != std::optional<int64_t>(1) ||
          constant_int(node->input(2)) != std::optional<int64_t>(-1))
        return "flattened other than from axis 1 to the last";
      reason = enqueue(component, node->input(0), with_layout(place, Layout::kChannelsFirst));
      return reason.empty() ? enqueue(component, node->output(), with_layout(place, Layout::kFeaturesLast))
                            : reason;
    } else if (kind == "aten::mean") {
      // Global average pooling written as x.mean([2, 3]): [N, C, H, W] -> [N, C].
      const auto dims = torch::jit::toIValue(node->input(1));
      const bool spatial = dims && dims->isIntList() && dims->toIntVector() == std::vector<int64_t>{2, 3} &&
                           constant_bool(node->input(2)) == std::optional<bool>(false);
      if (!spatial || place.layout != Layout::kChannelsFirst) return not_followed(kind);
      reason = enqueue(component, node->input(0), place);
      return reason.empty() ? enqueue(component, node->output(), with_layout(place, Layout::kFeaturesLast))
                            : reason;
    } else if (is_addition(node)) {
      if (place.offset != 0 || place.width != component.group.channels)
        return "a concatenation of them with other channels is added to another tensor";
      if (is_tensor(node->input(1))) reason = enqueue(component, node->input(1), place);
    } else if (!passes_channels(kind)) {
      return not_followed(kind);
    }
    if (reason.empty()) reason = enqueue(component, node->input(0), place);
    return reason.empty() ? enqueue(component, node->output(), place) : reason;
  }

  // A batch norm's weight, bias and running statistics join the group where its channels are.
  std::string add_batch_norm(Component& component, const Node* node, Place place) {
    for (size_t i = 1; i <= 4; ++i) {
      if (is_none(node->input(i))) continue;
      if (path_of(node->input(i)).empty()) return "a batch norm whose parameters are computed";
      if (!holds_tensor(node->input(i))) continue;
      if (attribute_at(module_, path_of(node->input(i))).toTensor().size(0) != place.width)
        return "a batch norm over another channel count";
      component.group.slices.push_back({path_of(node->input(i)), 0, 1, place.offset});
    }
    return "";
  }

  // Takes a depthwise convolution into the component: its filters and bias are the group's
  // channels, and its input and output carry them.
  std::string add_depthwise(Component& component, const Node* node, Place place) {
    component.nodes.insert(node);
    const size_t layer = *layer_weight(node->input(1));
    const std::string& name = layers_[layer].name;
    if (calls(layer) != 1) return "read by " + name + ", a depthwise convolution called more than once";
    if (place.layout != Layout::kChannelsFirst) return "read by convolution " + name + " after a flatten";
    if (layers_[layer].weight.size(0) != component.group.channels || place.offset != 0)
      return "read by " + name + ", a depthwise convolution over another channel count";
    if (!is_none(node->input(2)) && path_of(node->input(2)).empty())
      return "read by " + name + ", a depthwise convolution whose bias is computed";
    component.group.slices.push_back({name + ".weight", 0, 1});
    if (holds_tensor(node->input(2))) component.group.slices.push_back({path_of(node->input(2)), 0, 1});
    component.depthwise.push_back(layer);
    const std::string reason = enqueue(component, node->input(0), place);
    return reason.empty() ? enqueue(component, node->output(), place) : reason;
  }

  // Why the analysis cannot follow the tensors of `list` into its concatenations, or "": it must
  // be made by prim::ListConstruct at the top level of forward, and only appended to and
  // concatenated along the channels there.
  std::string list_reason(const Value* list) const {
    if (list->node()->kind() != c10::prim::ListConstruct || list->node()->owningBlock() != graph_->block())
      return "put in a list the analysis cannot follow";
    for (const auto& use : list->uses()) {
      const std::string kind = kind_of(use.user);
      if (use.user->owningBlock() != graph_->block())
        return "put in a list that is read inside control flow (" + kind + ")";
      if (kind == "aten::append" && use.offset == 0) continue;
      if (kind != "aten::cat" || use.offset != 0) return "put in a list read by " + kind;
      if (constant_int(use.user->input(1)) != std::optional<int64_t>(1))
        return "concatenated along another axis than the channels'";
    }
    return "";
  }

  // `value`, in `place`, is put in a list (by `user`: its construction or an append): its channels
  // go on, shifted, into every concatenation of the list. (Each use is taken on its own: two
  // values of the group in one list meet at two offsets of its concatenations, which enqueue
  // refuses.)
  std::string concatenate(Component& component, const Value* value, const Node* user, Place place) {
    const Value* list = kind_of(user) == "aten::append" ? user->input(0) : user->output();
    if (std::string reason = list_reason(list); !reason.empty()) return reason;
    if (place.layout != Layout::kChannelsFirst) return "concatenated after a linear layer or a flatten";
    for (const auto& use : list->uses()) {
      if (kind_of(use.user) != "aten::cat") continue;
      const auto parts = list_at(list, use.user);
      const auto copies = std::count(parts.begin(), parts.end(), value);
      if (copies == 0) continue;  // appended after this concatenation
      if (copies > 1) return "concatenated with itself";
      int64_t before = 0;
      int64_t width = 0;
      for (const Value* part : parts) {
        const auto channels = part == value ? std::optional<int64_t>(place.width) : width_of(part);
        if (!channels) return "concatenated with a tensor whose channel count the graph does not show";
        if (part == value) before = width;
        width += *channels;
      }
      component.nodes.insert(use.user);
      const std::string reason =
          enqueue(component, use.user->output(), {Layout::kChannelsFirst, before + place.offset, width});
      if (!reason.empty()) return reason;
    }
    return "";
  }

  // The tensors in `list` (made by prim::ListConstruct) when `reader` reads it: those it was made
  // of, then those appended before.
  static std::vector<const Value*> list_at(const Value* list, const Node* reader) {
    std::vector<const Value*> parts(list->node()->inputs().begin(), list->node()->inputs().end());
    std::vector<const Node*> appends;
    for (const auto& use : list->uses()) {
      if (kind_of(use.user) == "aten::append" && use.offset == 0 && use.user->isBefore(reader))
        appends.push_back(use.user);
    }
    std::sort(appends.begin(), appends.end(), [](const Node* a, const Node* b) { return a->isBefore(b); });
    for (const Node* append : appends) parts.push_back(append->input(1));
    return parts;
  }

  // The channels on axis 1 of `value` where the graph shows them: a convolution's filters, kept by
  // the ops that carry channels, summed over a concatenation; else the inputs of a convolution that
  // reads it (the model's input, say).
  std::optional<int64_t> width_of(const Value* value) const {
    const Node* node = value->node();
    const std::string kind = kind_of(node);
    if (is_convolution(kind) && holds_tensor(node->input(1)))
      return attribute_at(module_, path_of(node->input(1))).toTensor().size(0);
    if (kind == "aten::batch_norm" || passes_channels(kind) || is_addition(node))
      return width_of(node->input(0));
    if (kind != "aten::cat") return read_width(value);
    if (!list_reason(node->input(0)).empty()) return std::nullopt;
    int64_t width = 0;
    for (const Value* part : list_at(node->input(0), node)) {
      const auto channels = width_of(part);
      if (!channels) return std::nullopt;
      width += *channels;
    }
    return width;
  }

  // The input channels of a convolution reading `value`, if one does.
  std::optional<int64_t> read_width(const Value* value) const {
    for (const auto& use : value->uses()) {
      const Node* user = use.user;
      const auto groups = is_convolution(kind_of(user)) ? constant_int(user->input(6)) : std::nullopt;
      if (use.offset == 0 && groups && holds_tensor(user->input(1)))
        return attribute_at(module_, path_of(user->input(1))).toTensor().size(1) * *groups;
    }
    return std::nullopt;
  }

  static std::string not_followed(const std::string& kind) {
    return "read by " + kind + ", which this analysis does not follow";
  }

  std::string add_reader(Component& component, const Node* user, const std::string& kind, Place place) {
    component.reading.insert(user);
    ChannelGroup& group = component.group;
    const auto layer = layer_weight(user->input(1));
    if (!layer) return "read by a " + kind + " whose weight is not a prunable layer's";
    if (calls(*layer) != 1) return "read by " + layers_[*layer].name + ", which is called more than once";
    const int64_t inputs = layers_[*layer].weight.size(1);
    const std::string path = layers_[*layer].name + ".weight";
    if (is_convolution(kind)) {
      if (place.layout != Layout::kChannelsFirst)
        return "read by convolution " + layers_[*layer].name + " after a flatten";
      if (constant_int(user->input(6)) != std::optional<int64_t>(1) || inputs != place.width)
        return "read by " + layers_[*layer].name + ", a grouped convolution";
      group.slices.push_back({path, 1, 1, place.offset});
      return "";
    }
    if (place.layout != Layout::kFeaturesLast)
      return "read by linear layer " + layers_[*layer].name + " along another axis";
    if (inputs % place.width != 0)
      return fmt::format("read by {} with {} inputs, not a multiple of {} channels", layers_[*layer].name,
                         inputs, place.width);
    const int64_t per_channel = inputs / place.width;
    group.slices.push_back({path, 1, per_channel, place.offset * per_channel});
    return "";
  }

  const torch::jit::Module& module_;
  std::shared_ptr<Graph> graph_;
  const std::vector<PrunableLayer>& layers_;
  AttributePaths paths_;
  std::map<size_t, int64_t> calls_;
  std::unordered_set<size_t> assigned_;
};

// The graph with the branches that the module's own boolean and numeric attributes decide taken:
// `if self.use_res_connect:` or `if self.stride == 1:` becomes the code it runs. (`training` stays
// open: the branches it decides hold batch-norm bookkeeping, not the channels' path.)
void fold_module_flags(const torch::jit::Module& module, std::shared_ptr<Graph>& graph) {
  AttributePaths paths;
  std::vector<std::pair<Node*, std::string>> flags;
  for (Node* node : graph->block()->nodes()) {
    const std::string path = record_attribute_path(node, graph->inputs()[0], paths);
    if (path.empty() || node->s(c10::attr::name) == "training") continue;
    const auto type = node->output()->type()->kind();
    if (type == c10::TypeKind::BoolType || type == c10::TypeKind::IntType || type == c10::TypeKind::FloatType)
      flags.emplace_back(node, path);
  }
  for (const auto& [node, path] : flags) {
    const c10::IValue value = attribute_at(module, path);
    if (!value.isBool() && !value.isInt() && !value.isDouble()) continue;
    torch::jit::WithInsertPoint point(node);
    node->output()->replaceAllUsesWith(graph->insertConstant(value));
  }
  torch::jit::ConstantPropagation(graph);
  torch::jit::EliminateDeadCode(graph);
}

// Collects the convolution calls in `block` and the blocks inside it whose weight is one of `cut`,
// depthwise (one input channel per filter) and no longer as many filters as its groups.
void stale_groups(const torch::jit::Module& module, Block* block, const Value* self, AttributePaths& paths,
                  const std::set<std::string>& cut, std::vector<std::pair<Node*, int64_t>>& found) {
  for (Node* node : block->nodes()) {
    record_attribute_path(node, self, paths);
    if (is_convolution(kind_of(node)) && node->inputs().size() > 6) {
      const auto path = paths.find(node->input(1));
      const auto groups = constant_int(node->input(6));
      if (path != paths.end() && cut.count(path->second) > 0 && groups && *groups > 1) {
        const c10::IValue weight = attribute_at(module, path->second);
        if (weight.isTensor() && weight.toTensor().size(1) == 1 && weight.toTensor().size(0) != *groups)
          found.emplace_back(node, weight.toTensor().size(0));
      }
    }
    for (Block* inner : node->blocks()) stale_groups(module, inner, self, paths, cut, found);
  }
}

std::vector<std::pair<Node*, int64_t>> stale_groups(const torch::jit::Module& module, Graph& graph,
                                                    const std::set<std::string>& cut) {
  AttributePaths paths;
  std::vector<std::pair<Node*, int64_t>> found;
  stale_groups(module, graph.block(), graph.inputs()[0], paths, cut, found);
  return found;
}

}  // namespace

void inline_smaller_forward(torch::jit::Module& module, const std::set<std::string>& cut_weights) {
  const auto method = module.find_method("forward");
  if (!method) return;
  Graph& graph = *method->graph();
  torch::jit::Inline(graph);
  for (const auto& [node, groups] : stale_groups(module, graph, cut_weights)) {
    torch::jit::WithInsertPoint point(node);
    node->replaceInput(6, graph.insertConstant(groups));
  }
}

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
