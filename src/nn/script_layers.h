// Internal: the prunable layers of a TorchScript module, found by use. Every parameter of two or
// more dimensions that a convolution, linear, addmm/matmul or attention op of the inlined forward
// graph reads as its weight is a layer; an attention in-projection (q, k and v stacked in one
// parameter) is three, one per row block. Embedding tables (read by an embedding lookup) and
// parameters added to the activations are sites of type embedding and pos_embedding, which the
// caller keeps only when embeddings are pruned.
#pragma once

#include <string>
#include <vector>

#include <torch/script.h>

namespace rdprune {

struct ScriptLayerSite {
  std::string name;       // "<module path>" for a `weight`, else the parameter's path (+ ".q" ...)
  std::string type;       // conv1d|...|linear|linear_t|attn_q|...|embedding|pos_embedding
  std::string owner;      // path of the module that holds the parameter ("" for the root)
  std::string attribute;  // the parameter's name in that module
  int64_t row_begin = 0;  // the layer's first row in the parameter
  int64_t rows = 0;       // its rows (all of them unless a q/k/v block)
};

// The layers of `module` in the order of its named_parameters(). Parameters the forward graph does
// not show (a forward it cannot inline) are found by class as before: Conv2d and Linear weights.
// Throws Error naming `path` for an attention in-projection whose rows are not three equal blocks.
std::vector<ScriptLayerSite> find_script_layers(const torch::jit::Module& module, const std::string& path);

}  // namespace rdprune
