#include "script_stages.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/alias_analysis.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>

namespace rdprune {
namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

bool is_tensor(const Value* value) {
  return value->type()->cast<c10::TensorType>() != nullptr;
}

// Attribute writes, and calls that inlining left (interfaces): stages could not see through them.
bool unsupported(const Block* block) {
  for (const Node* node : block->nodes()) {
    const auto kind = node->kind();
    if (kind == c10::prim::SetAttr || kind == c10::prim::CallMethod || kind == c10::prim::CallFunction)
      return true;
    for (const Block* inner : node->blocks())
      if (unsupported(inner)) return true;
  }
  return false;
}

// Every value a node reads, its nested blocks included (values defined inside them too).
void reads_of(const Node* node, std::vector<const Value*>& out) {
  for (const Value* input : node->inputs()) out.push_back(input);
  for (const Block* block : node->blocks()) {
    for (const Node* inner : block->nodes()) reads_of(inner, out);
    for (const Value* result : block->outputs()) out.push_back(result);
  }
}

// At most this many tensors pass between two stages.
constexpr size_t kMaxCarried = 4;

// The forward graph, inlined, as a sequence of top-level nodes. Values are "pure" when they follow
// from the module alone (constants, attributes, side-effect-free functions of those): a stage
// recomputes them instead of receiving them. A cut before node k is valid when the non-pure values
// defined before k and read from k on are a few tensors.
class ForwardGraph {
 public:
  explicit ForwardGraph(std::shared_ptr<Graph> graph) : graph_(std::move(graph)) {
    self_ = graph_->inputs()[0];
    input_ = graph_->inputs()[1];
    pure_.insert(self_);
    for (Node* node : graph_->nodes()) {
      const bool pure = node->blocks().empty() && !node->hasSideEffects() && !node->isNondeterministic() &&
                        std::all_of(node->inputs().begin(), node->inputs().end(),
                                    [this](const Value* v) { return pure_.count(v) > 0; });
      for (const Value* output : node->outputs()) {
        defined_at_[output] = static_cast<int64_t>(nodes_.size());
        if (pure) pure_.insert(output);
      }
      node_pure_.push_back(pure);
      nodes_.push_back(node);
    }
    defined_at_[input_] = -1;
    record_paths(graph_->block());
  }

  const std::shared_ptr<Graph>& graph() const { return graph_; }
  Value* self() const { return self_; }
  Value* input() const { return input_; }
  Value* output() const { return graph_->outputs()[0]; }
  const std::vector<Node*>& nodes() const { return nodes_; }
  bool pure(const Value* value) const { return pure_.count(value) > 0; }

  // For each cut k in [1, size): the tensors that cross it, in the order they are defined; empty
  // when the cut is not valid (nothing or more than kMaxCarried values cross, or one that is not
  // a tensor).
  std::vector<std::vector<Value*>> carriers() const {
    const int64_t count = static_cast<int64_t>(nodes_.size());
    std::unordered_map<const Value*, int64_t> last_read;
    for (int64_t k = 0; k < count; ++k) {
      std::vector<const Value*> reads;
      reads_of(nodes_[k], reads);
      for (const Value* value : reads) last_read[value] = k;
    }
    last_read[output()] = count;
    std::vector<std::vector<Value*>> carried(count);
    if (count == 0) return carried;
    std::vector<bool> valid(count, true);
    valid[0] = false;
    for (const auto& [value, last] : last_read) {
      const auto defined = defined_at_.find(value);
      if (defined == defined_at_.end() || pure(value)) continue;  // local to a block, or recomputed
      for (int64_t k = defined->second + 1; k <= last && k < count; ++k) {
        if (!is_tensor(value)) valid[k] = false;
        carried[k].push_back(const_cast<Value*>(value));
      }
    }
    for (int64_t k = 0; k < count; ++k) {
      if (!valid[k] || carried[k].empty() || carried[k].size() > kMaxCarried) {
        carried[k].clear();
        continue;
      }
      std::sort(carried[k].begin(), carried[k].end(), [this](const Value* a, const Value* b) {
        const int64_t da = defined_at_.at(a), db = defined_at_.at(b);
        return da != db ? da < db : a->offset() < b->offset();
      });
    }
    return carried;
  }

  bool node_pure(size_t k) const { return node_pure_[k]; }

  // For each of `weights`, the first and the last non-pure node that read it (directly or through
  // pure values); -1 for a weight no node reads. A weight is known by its storage, under whatever
  // names it has.
  std::vector<std::pair<int64_t, int64_t>> reads_of_weights(const torch::jit::Module& module,
                                                            const std::vector<torch::Tensor>& weights) const {
    // Several layers may share one parameter (an attention in-projection's q, k and v).
    std::unordered_map<const Value*, std::vector<size_t>> weight_of;
    for (const auto& [value, path] : paths_) {
      const c10::IValue attribute = attribute_at(module, path);
      if (!attribute.isTensor()) continue;
      for (size_t i = 0; i < weights.size(); ++i) {
        if (attribute.toTensor().is_same(weights[i])) weight_of[value].push_back(i);
      }
    }
    std::vector<std::pair<int64_t, int64_t>> span(weights.size(), {-1, -1});
    for (size_t k = 0; k < nodes_.size(); ++k) {
      if (node_pure_[k]) continue;
      std::vector<const Value*> reads;
      reads_of(nodes_[k], reads);
      std::unordered_set<const Value*> seen;
      while (!reads.empty()) {
        const Value* value = reads.back();
        reads.pop_back();
        if (!seen.insert(value).second) continue;
        const auto weight = weight_of.find(value);
        for (size_t i : weight != weight_of.end() ? weight->second : std::vector<size_t>{}) {
          auto& [first, last] = span[i];
          if (first < 0) first = static_cast<int64_t>(k);
          last = static_cast<int64_t>(k);
        }
        // A pure value carries the attributes it was computed from.
        if (pure(value) && value != self_) {
          for (const Value* input : value->node()->inputs()) reads.push_back(input);
        }
      }
    }
    return span;
  }

 private:
  // Attribute paths of prim::GetAttr results, e.g. "layers.0.conv1.weight".
  void record_paths(const Block* block) {
    for (const Node* node : block->nodes()) {
      record_attribute_path(node, self_, paths_);
      for (const Block* inner : node->blocks()) record_paths(inner);
    }
  }

  std::shared_ptr<Graph> graph_;
  Value* self_ = nullptr;
  Value* input_ = nullptr;
  std::vector<Node*> nodes_;
  std::vector<bool> node_pure_;
  std::unordered_set<const Value*> pure_;
  std::unordered_map<const Value*, int64_t> defined_at_;
  AttributePaths paths_;
};

// A graph of (self, ins...) running nodes [begin, end) of `forward` and returning `outs`. Pure
// values from earlier nodes are recomputed from self.
std::shared_ptr<Graph> stage_graph(const ForwardGraph& forward, size_t begin, size_t end,
                                   const std::vector<Value*>& ins, const std::vector<Value*>& outs) {
  auto graph = std::make_shared<Graph>();
  Value* self = graph->addInput("self")->setType(forward.self()->type());
  std::unordered_map<const Value*, Value*> env{{forward.self(), self}};
  for (Value* in : ins) env[in] = graph->addInput()->setType(c10::TensorType::get());
  std::function<Value*(Value*)> map = [&](Value* value) -> Value* {
    const auto found = env.find(value);
    if (found != env.end()) return found->second;
    TORCH_CHECK(forward.pure(value), "a value crosses a stage boundary without being handed on");
    Node* source = value->node();
    Node* copy = graph->insertNode(graph->createClone(source, map));
    for (size_t i = 0; i < source->outputs().size(); ++i) env[source->output(i)] = copy->output(i);
    return env.at(value);
  };
  for (size_t k = begin; k < end; ++k) {
    Node* source = forward.nodes()[k];
    Node* copy = graph->insertNode(graph->createClone(source, map));
    for (size_t i = 0; i < source->outputs().size(); ++i) env[source->output(i)] = copy->output(i);
  }
  // A function returns one value: several leave as a tuple.
  std::vector<Value*> results;
  for (Value* out : outs) results.push_back(map(out));
  graph->registerOutput(results.size() == 1 ? results.front()
                                            : graph->insertNode(graph->createTuple(results))->output());
  return graph;
}

}  // namespace

std::string record_attribute_path(const Node* node, const Value* self, AttributePaths& paths) {
  if (node->kind() != c10::prim::GetAttr) return "";
  const std::string& name = node->s(c10::attr::name);
  std::string path;
  if (node->input(0) == self) {
    path = name;
  } else if (const auto parent = paths.find(node->input(0)); parent != paths.end()) {
    path = parent->second + "." + name;
  } else {
    return "";
  }
  paths[node->output()] = path;
  return path;
}

c10::IValue attribute_at(const torch::jit::Module& module, const std::string& path) {
  c10::IValue value = module._ivalue();
  size_t begin = 0;
  while (begin <= path.size()) {
    const size_t dot = std::min(path.find('.', begin), path.size());
    const std::string name = path.substr(begin, dot - begin);
    if (!value.isObject() || !value.toObject()->type()->hasAttribute(name)) return c10::IValue();
    value = value.toObject()->getAttr(name);
    begin = dot + 1;
  }
  return value;
}

ScriptStages::ScriptStages(const torch::jit::Module& module, const std::vector<torch::Tensor>& weights)
    : layer_stages_(weights.size(), 0), layer_last_stages_(weights.size(), 0) {
  const auto method = module.find_method("forward");
  if (!method) return;
  std::shared_ptr<Graph> graph = method->graph()->copy();
  torch::jit::Inline(*graph);
  if (graph->inputs().size() != 2 || graph->outputs().size() != 1 || !is_tensor(graph->inputs()[1]) ||
      !is_tensor(graph->outputs()[0]) || unsupported(graph->block()))
    return;
  const ForwardGraph forward(graph);
  if (forward.nodes().empty()) return;  // forward returns its input: nothing to cut
  const std::vector<std::vector<Value*>> carriers = forward.carriers();

  // Each layer's stage starts at the latest valid cut at or before its first read, moved back over
  // pure nodes (which leave the crossing tensors as they are).
  const auto spans = forward.reads_of_weights(module, weights);
  std::vector<size_t> starts{0};
  std::vector<size_t> layer_starts;
  for (const auto& [first, last] : spans) {
    size_t start = 0;
    for (int64_t k = first; k > 0; --k) {
      if (!carriers[k].empty()) {
        start = static_cast<size_t>(k);
        break;
      }
    }
    while (start > 0 && forward.node_pure(start - 1)) --start;
    layer_starts.push_back(start);
    starts.push_back(start);
  }
  std::sort(starts.begin(), starts.end());
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  if (starts.size() < 2) return;

  for (size_t s = 0; s < starts.size(); ++s) {
    const size_t end = s + 1 < starts.size() ? starts[s + 1] : forward.nodes().size();
    const std::vector<Value*> ins = s == 0 ? std::vector<Value*>{forward.input()} : carriers[starts[s]];
    const std::vector<Value*> outs =
        s + 1 < starts.size() ? carriers[end] : std::vector<Value*>{forward.output()};
    Stage stage;
    std::shared_ptr<Graph> piece = stage_graph(forward, starts[s], end, ins, outs);
    try {
      torch::jit::AliasDb aliases(piece);
      for (size_t i = 1; i < piece->inputs().size(); ++i)
        stage.writes_input = stage.writes_input || aliases.hasWriters(piece->inputs()[i]);
    } catch (const std::exception&) {
      stage.writes_input = true;
    }
    stage.function = std::make_shared<torch::jit::GraphFunction>(
        c10::QualifiedName("rdprune_stage_" + std::to_string(s)), piece, nullptr);
    stages_.push_back(std::move(stage));
  }
  for (size_t i = 0; i < weights.size(); ++i) {
    layer_stages_[i] =
        static_cast<size_t>(std::lower_bound(starts.begin(), starts.end(), layer_starts[i]) - starts.begin());
    const int64_t last = std::max<int64_t>(spans[i].second, 0);
    layer_last_stages_[i] = std::max(
        layer_stages_[i],
        static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), static_cast<size_t>(last)) -
                            starts.begin()) -
            1);
  }
}

StageValues ScriptStages::run(torch::jit::Module& module, size_t first, size_t last,
                              StageValues input) const {
  last = std::min(last, stages_.size());
  if (first >= last) return input;
  // Everything a stage writes in place derives from these inputs: copies keep the caller's intact.
  const bool writes = std::any_of(stages_.begin() + static_cast<std::ptrdiff_t>(first),
                                  stages_.begin() + static_cast<std::ptrdiff_t>(last),
                                  [](const Stage& stage) { return stage.writes_input; });
  if (writes) {
    for (auto& value : input) value = value.clone();
  }
  for (size_t s = first; s < last; ++s) {
    torch::jit::Stack stack{module._ivalue()};
    for (auto& value : input) stack.emplace_back(std::move(value));
    stages_[s].function->run(stack);
    input.clear();
    const c10::IValue result = stack.back();
    if (result.isTuple()) {
      for (const auto& value : result.toTupleRef().elements()) input.push_back(value.toTensor());
    } else {
      input.push_back(result.toTensor());
    }
  }
  return input;
}

}  // namespace rdprune
