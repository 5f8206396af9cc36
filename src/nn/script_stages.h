// Internal: suffix execution for TorchScript models. A module's forward graph, with every method
// call inlined, is cut wherever a few tensors carry everything the rest of the graph needs; each
// piece becomes a function of (module, tensors) that the interpreter runs on its own.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/script.h>

#include "rdprune/network.h"

namespace torch::jit {
struct GraphFunction;
struct Node;
struct Value;
}  // namespace torch::jit

namespace rdprune {

// The attribute at a dotted path under `module` (e.g. "layer1.0.bn1.running_mean"); None when there
// is none.
c10::IValue attribute_at(const torch::jit::Module& module, const std::string& path);

// Attribute paths of values: the prim::GetAttr results read from the module's `self`.
using AttributePaths = std::unordered_map<const torch::jit::Value*, std::string>;

// Records the path of `node`'s result in `paths` when it is a prim::GetAttr of `self` or of a
// value already there ("layer1.0.conv1" + "weight"); returns that path, or "".
std::string record_attribute_path(const torch::jit::Node* node, const torch::jit::Value* self,
                                  AttributePaths& paths);

class ScriptStages {
 public:
  // Splits `module`'s forward at the latest cut before the first read of each of `weights` (the
  // parameters that hold the prunable layers' weights, one per layer). One stage when the graph has no such
  // cut, or when it is not one tensor in and one tensor out, writes module attributes or calls interfaces.
  ScriptStages(const torch::jit::Module& module, const std::vector<torch::Tensor>& weights);

  size_t size() const { return stages_.empty() ? 1 : stages_.size(); }
  // The stage whose run first reads weights[layer].
  size_t stage_of(size_t layer) const { return layer < layer_stages_.size() ? layer_stages_[layer] : 0; }
  // The last stage that reads weights[layer] (a layer called again later).
  size_t last_stage_of(size_t layer) const {
    return layer < layer_last_stages_.size() ? layer_last_stages_[layer] : 0;
  }
  // Runs stages [first, last) of `module` on `input` (the inputs of stage `first`). A stage that
  // writes into its inputs in place gets copies, so callers may keep and reuse theirs.
  StageValues run(torch::jit::Module& module, size_t first, size_t last, StageValues input) const;

 private:
  struct Stage {
    std::shared_ptr<torch::jit::GraphFunction> function;
    bool writes_input = false;
  };
  std::vector<Stage> stages_;  // empty: the whole forward is one stage
  std::vector<size_t> layer_stages_;
  std::vector<size_t> layer_last_stages_;
};

}  // namespace rdprune
