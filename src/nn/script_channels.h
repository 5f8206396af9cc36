// Internal: the channel groups of a TorchScript CNN (docs/channels.md, "TorchScript models"), found
// on its inlined forward graph. A group starts at a prunable convolution (groups = 1) or linear
// layer whose weight is a module's `weight`; its channels flow through batch norms and depthwise
// convolutions (whose tensors join the group), element-wise activations, dropout, pooling and a
// flatten, and end in the convolutions and linear layers that read them. An addition joins both
// operands' channels: every layer producing either becomes part of one group (a residual
// connection ties them). A concatenation along the channels (torch.cat of a list, appended to or
// not) carries them on at their offset among the other parts'. Any other use (control flow, the
// model's output, a grouped convolution other than a depthwise one) keeps the channels whole, and
// the reason is recorded.
#pragma once

#include <set>
#include <string>
#include <vector>

#include <torch/script.h>

#include "rdprune/channel_cost.h"
#include "rdprune/network.h"

namespace rdprune {

struct ScriptChannels {
  std::vector<ChannelGroup> groups;  // in the order of their producers in the forward graph
  // "<layer>: <why its output channels stay whole>" for every other prunable layer that produces
  // channels.
  std::vector<std::string> unresolved;
};

ScriptChannels find_script_channels(const torch::jit::Module& module,
                                    const std::vector<PrunableLayer>& layers);

// After the tensors at `cut_weights` lost channels: inlines forward (every method call it makes
// becomes its code) and sets the `groups` of every depthwise convolution among them to its new
// number of filters. A convolution module's groups is a constant in the code of its type, so only
// the inlined code gives every call a constant of its own.
void inline_smaller_forward(torch::jit::Module& module, const std::set<std::string>& cut_weights);

}  // namespace rdprune
