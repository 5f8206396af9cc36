#include "script_layers.h"

#include <map>
#include <unordered_map>
#include <unordered_set>

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>

#include "rdprune/error.h"
#include "rdprune/network.h"

namespace rdprune {
namespace {

using torch::jit::Block;
using torch::jit::Node;
using torch::jit::Value;

// A value that is a parameter, or follows from one by ops that keep its weights as they are
// (transposes, chunks, casts): the parameter's path, and whether the value is its transpose.
struct Derived {
  std::string path;
  bool transposed = false;
};

bool keeps_weights(const std::string& kind) {
  static const std::unordered_set<std::string> kinds = {
      "aten::t",      "aten::transpose", "aten::permute",     "aten::contiguous",     "aten::to",
      "aten::detach", "aten::split",     "aten::chunk",       "aten::unbind",         "prim::ListUnpack",
      "aten::slice",  "aten::narrow",    "aten::__getitem__", "prim::unchecked_cast", "aten::type_as"};
  return kinds.count(kind) > 0;
}

// "convNd" or "conv_transposeNd" from the weight's rank.
std::string conv_type(bool transposed, int64_t rank) {
  return std::string(transposed ? "conv_transpose" : "conv") + std::to_string(rank - 2) + "d";
}

// The layer type of a parameter that `node` reads as argument `arg`; "" when that is no weight.
// "in_proj" marks q, k and v stacked in one parameter.
std::string weight_use(const Node* node, size_t arg, const Derived& derived, int64_t rank) {
  const std::string kind = node->kind().toQualString();
  if ((kind == "aten::conv1d" || kind == "aten::conv2d" || kind == "aten::conv3d") && arg == 1)
    return conv_type(false, rank);
  if ((kind == "aten::conv_transpose1d" || kind == "aten::conv_transpose2d" ||
       kind == "aten::conv_transpose3d") &&
      arg == 1)
    return conv_type(true, rank);
  if ((kind == "aten::_convolution" || kind == "aten::convolution") && arg == 1) {
    const auto transposed = torch::jit::toIValue(node->input(6));
    return conv_type(transposed && transposed->isBool() && transposed->toBool(), rank);
  }
  // Embeddings: a lookup table, and a parameter added to the activations (a position embedding).
  if ((kind == "aten::embedding" || kind == "aten::embedding_bag") && arg == 0 && rank == 2)
    return "embedding";
  if ((kind == "aten::add" || kind == "aten::add_") && arg <= 1 && !derived.transposed)
    return "pos_embedding";
  if (rank != 2) return "";
  if (kind == "aten::linear" && arg == 1) return derived.transposed ? "linear_t" : "linear";
  // x @ W with W stored [in, out] (GPT-2's Conv1D: addmm(bias, x, W)).
  if ((kind == "aten::addmm" && arg == 2) || ((kind == "aten::mm" || kind == "aten::matmul") && arg == 1))
    return derived.transposed ? "linear" : "linear_t";
  if (kind == "aten::_native_multi_head_attention") return arg == 5 ? "in_proj" : arg == 7 ? "linear" : "";
  if (kind == "aten::_transformer_encoder_layer_fwd") {
    if (arg == 3) return "in_proj";
    if (arg == 5 || arg == 14 || arg == 16) return "linear";
  }
  return "";
}

class UseFinder {
 public:
  UseFinder(const Value* self, const std::unordered_map<std::string, int64_t>& ranks)
      : self_(self), ranks_(ranks) {}

  void visit(const Block* block) {
    for (const Node* node : block->nodes()) {
      visit_node(node);
      for (const Block* inner : node->blocks()) visit(inner);
    }
  }
  const std::unordered_map<std::string, std::string>& types() const { return types_; }

 private:
  void visit_node(const Node* node) {
    const std::string kind = node->kind().toQualString();
    if (node->kind() == c10::prim::GetAttr) {
      const std::string& name = node->s(c10::attr::name);
      if (node->input(0) == self_) {
        derived_[node->output()] = {name, false};
      } else if (const auto parent = derived_.find(node->input(0)); parent != derived_.end()) {
        derived_[node->output()] = {parent->second.path + "." + name, false};
      }
      return;
    }
    for (size_t arg = 0; arg < node->inputs().size(); ++arg) {
      const auto found = derived_.find(node->input(arg));
      if (found == derived_.end()) continue;
      const auto rank = ranks_.find(found->second.path);
      if (rank == ranks_.end()) continue;  // a module, or no parameter of two or more dimensions
      if (keeps_weights(kind)) {
        const bool flips = kind == "aten::t" || kind == "aten::transpose" || kind == "aten::permute";
        for (const Value* output : node->outputs())
          derived_[output] = {found->second.path, found->second.transposed != flips};
        continue;
      }
      const std::string type = weight_use(node, arg, found->second, rank->second);
      if (type.empty()) continue;
      std::string& recorded = types_[found->second.path];
      // An attention op says most; any product of matrices more than an embedding's use.
      if (recorded.empty() || type == "in_proj" || is_embedding_type(recorded)) recorded = type;
    }
  }

  const Value* self_;
  const std::unordered_map<std::string, int64_t>& ranks_;
  std::unordered_map<const Value*, Derived> derived_;
  std::unordered_map<std::string, std::string> types_;  // parameter path -> layer type
};

// Parameter path -> layer type, from the uses in the inlined forward graph; empty when the module
// has no forward.
std::unordered_map<std::string, std::string> types_by_use(
    const torch::jit::Module& module, const std::unordered_map<std::string, int64_t>& ranks) {
  const auto method = module.find_method("forward");
  if (!method) return {};
  std::shared_ptr<torch::jit::Graph> graph = method->graph()->copy();
  torch::jit::Inline(*graph);
  UseFinder finder(graph->inputs()[0], ranks);
  finder.visit(graph->block());
  return finder.types();
}

// "__torch__.torch.nn.modules.conv.Conv2d" without TorchScript's "___torch_mangle_N." segments.
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

// Conv2d and Linear weights by class: what a forward the graph cannot show still prunes.
std::unordered_map<std::string, std::string> types_by_class(const torch::jit::Module& module) {
  std::unordered_map<std::string, std::string> types;
  for (const auto& item : module.named_modules()) {
    const std::string name = plain_type_name(item.value);
    const std::string prefix = item.name.empty() ? "" : item.name + ".";
    if (name == "__torch__.torch.nn.modules.conv.Conv2d") types[prefix + "weight"] = "conv2d";
    if (name == "__torch__.torch.nn.modules.linear.Linear") types[prefix + "weight"] = "linear";
  }
  return types;
}

ScriptLayerSite site_of(const std::string& path, const std::string& type, int64_t rows) {
  ScriptLayerSite site;
  const size_t dot = path.rfind('.');
  site.owner = dot == std::string::npos ? "" : path.substr(0, dot);
  site.attribute = dot == std::string::npos ? path : path.substr(dot + 1);
  site.name = site.attribute == "weight" && !site.owner.empty() ? site.owner : path;
  site.type = type;
  site.rows = rows;
  return site;
}

}  // namespace

std::vector<ScriptLayerSite> find_script_layers(const torch::jit::Module& module, const std::string& path) {
  std::vector<std::pair<std::string, torch::Tensor>> parameters;
  std::unordered_map<std::string, int64_t> ranks;
  std::unordered_set<const void*> seen;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    // A parameter registered under two names is one layer: the first name (as PyTorch's
    // named_parameters() keeps). Nothing to prune in an empty one, e.g. Linear(0, n).
    if (item.value.dim() < 2 || item.value.numel() == 0) continue;
    if (!seen.insert(item.value.unsafeGetTensorImpl()).second) continue;
    parameters.emplace_back(item.name, item.value);
    ranks[item.name] = item.value.dim();
  }
  auto types = types_by_use(module, ranks);
  for (const auto& [name, type] : types_by_class(module)) types.emplace(name, type);

  std::vector<ScriptLayerSite> sites;
  for (const auto& [name, tensor] : parameters) {
    const auto type = types.find(name);
    if (type == types.end()) continue;
    const int64_t rows = tensor.size(0);
    if (type->second != "in_proj") {
      sites.push_back(site_of(name, type->second, rows));
      continue;
    }
    if (rows % 3 != 0) {
      throw Error(path + ": attention in-projection " + name + " has " + std::to_string(rows) +
                  " rows, which do not split into three equal blocks (q, k, v)");
    }
    const char* blocks[] = {"q", "k", "v"};
    for (int64_t b = 0; b < 3; ++b) {
      ScriptLayerSite site = site_of(name, std::string("attn_") + blocks[b], rows / 3);
      site.name = name + "." + blocks[b];
      site.row_begin = b * rows / 3;
      sites.push_back(site);
    }
  }
  return sites;
}

}  // namespace rdprune
