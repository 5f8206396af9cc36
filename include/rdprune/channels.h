// Channel pruning (docs/channels.md): whole channels of a zoo model removed together with
// everything that produces or reads them, as masks while measuring and fine-tuning, and as a
// physically smaller model for deployment.
#pragma once

#include "rdprune/layering.h"

#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "rdprune/channel_cost.h"
#include "rdprune/curves.h"
#include "rdprune/dataset.h"
#include "rdprune/distortion.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

// The network's channel groups at its present widths: the zoo model's own, or those found on a
// TorchScript model's forward graph (docs/channels.md, "TorchScript models"). Throws UsageError for
// a model that has none this version can find (the vit; a graph with none it can follow).
std::vector<ChannelGroup> channel_groups(Network& network);

// For a TorchScript model, "<layer>: <reason>" for every layer whose output channels stay whole
// (read by an op the analysis does not follow, grouped, the model's outputs); empty for zoo models.
std::vector<std::string> unremovable_channels(Network& network);

// What each prunable layer costs as the groups shrink: its weights and FLOPs per weight (from the
// layer census `infos`) and the groups on its output and input sides.
ChannelCostModel channel_cost_model(const std::vector<ChannelGroup>& groups,
                                    const std::vector<LayerInfo>& infos);

// Per channel of the group, the score `criterion` ranks it by: magnitude: the L1 norm of the
// producing layer's weights for it (Li et al. 2017); bn_scale: the absolute scale of the batch norm
// after it (network slimming, Liu et al. 2017; Error for a group without one). Where a residual
// addition ties several producing layers (and batch norms) into one group, or concatenations carry
// its channels to several batch norms, their scores are summed. Channels
// no longer in use (nothing unmasked produces or reads them) score -1. float64 [channels] on the CPU.
torch::Tensor channel_scores(Network& network, const ChannelGroup& group, const std::string& criterion);

// The group's channels in the order channel pruning removes them: by ascending channel_scores,
// ties by index. int64 [channels].
torch::Tensor channel_order(Network& network, const ChannelGroup& group,
                            const std::string& criterion = "magnitude");

// Masks the weights that produce or read the group's channels where `keep` (bool [channels]) is
// false, on top of the masks already there, and zeroes them. The network's outputs are then
// exactly those of the network without those channels, whatever the batch norm's shift.
void mask_channels(Network& network, const ChannelGroup& group, const torch::Tensor& keep);

// A keep vector for `order` that keeps its last `kept` channels.
torch::Tensor keep_last(const torch::Tensor& order, int64_t kept);

// Applies a channel plan as masks: each group keeps its `kept` highest-ranked channels by the plan's
// criterion. Throws Error when the plan's groups are not the network's (names, order, channel
// counts).
void apply_channel_plan(Network& network, const Plan& plan, const std::string& source);

// The network without the channels its masks leave unused (the producing weights and every
// reading weight masked), whose outputs equal the masked network's: a zoo model of the smaller
// widths (ModelMeta::widths), or a copy of the TorchScript module with smaller tensors. Masks on
// the weights that remain travel with it. Throws UsageError for models without channel groups and
// Error where a group would keep no channel.
std::unique_ptr<Network> remove_pruned_channels(Network& network);

// Every group's curve over its kept channels at the options' levels (at least one channel kept),
// each measured by masking its lowest-ranked channels (channel_order) alone, from the group's own
// stage on. Returns curves of granularity "channel" with the cost model. Batch-norm aware
// (recalibrate_bn): the pruned networks run on each calibration batch's statistics, as for weight
// curves. The options' cache is not used; the Taylor estimator, level batching, context around a
// plan and more than one process are refused (Error).
CurveSet measure_channel_curves(Network& network, const Dataset& calibration,
                                const std::string& calibration_description,
                                const std::vector<LayerInfo>& infos, const CurveOptions& options);

}  // namespace rdprune
