#include "rdprune/channels.h"

#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "channel_layers.h"
#include "network_impl.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

NativeNetwork& native_of(Network& network) {
  auto* native = dynamic_cast<NativeNetwork*>(&network);
  if (native == nullptr) {
    throw UsageError("granularity",
                     "channel: channel groups are found in zoo and TorchScript models; this "
                     "version finds none in " +
                         network.format() + " models");
  }
  return *native;
}

// The parameter or buffer at `path`; undefined when there is none.
torch::Tensor tensor_at(Network& network, const std::string& path) {
  if (auto* script = dynamic_cast<ScriptNetwork*>(&network)) {
    const c10::IValue value = attribute_at(script->module(), path);
    return value.isTensor() ? value.toTensor() : torch::Tensor();
  }
  ZooNetImpl& model = native_of(network).model();
  if (const auto* parameter = model.named_parameters().find(path)) return *parameter;
  if (const auto* buffer = model.named_buffers().find(path)) return *buffer;
  return {};
}

torch::Tensor mask_or_ones(const Network& network, size_t layer) {
  const torch::Tensor& mask = layer < network.masks().size() ? network.masks()[layer] : torch::Tensor();
  const torch::Tensor& weight = network.layers()[layer].weight;
  return mask.defined() ? mask : torch::ones(weight.sizes(), weight.options().dtype(torch::kBool));
}

// Per channel, whether `mask` (shaped like the weight) keeps anything of it along the slice.
torch::Tensor any_kept(const torch::Tensor& mask, const ChannelSlice& slice, int64_t channels) {
  return mask.narrow(slice.dim, slice.offset, channels * slice.per_channel)
      .transpose(0, slice.dim)
      .contiguous()
      .reshape({channels, -1})
      .any(1);
}

// `keep` [channels] placed along the slice's dim of `size` indices: true outside the slice.
torch::Tensor along_dim(const torch::Tensor& keep, const ChannelSlice& slice, int64_t size) {
  torch::Tensor along = torch::ones({size}, keep.options());
  along.narrow(0, slice.offset, keep.numel() * slice.per_channel)
      .copy_(keep.repeat_interleave(slice.per_channel));
  return along;
}

// `keep` [channels] spread over a weight of `shape` along the slice.
torch::Tensor spread(const torch::Tensor& keep, const ChannelSlice& slice, c10::IntArrayRef shape) {
  std::vector<int64_t> view(shape.size(), 1);
  view[static_cast<size_t>(slice.dim)] = shape[static_cast<size_t>(slice.dim)];
  return along_dim(keep, slice, view[static_cast<size_t>(slice.dim)]).reshape(view).expand(shape);
}

// Whether each channel of the group is still used: produced or read by some unmasked weight.
torch::Tensor in_use(const Network& network, const ChannelGroup& group) {
  torch::Tensor used;
  for (const auto& slice : group.slices) {
    const auto layer = layer_of(network, slice.tensor);
    if (!layer) continue;
    const torch::Tensor here = any_kept(mask_or_ones(network, *layer), slice, group.channels);
    used = used.defined() ? used.logical_or(here) : here;
  }
  return used;
}

// The absolute scales (gamma) of every batch norm that holds the group's channels, summed: those
// after its producing layers, and those after every concatenation that carries them.
torch::Tensor batch_norm_scale(Network& network, const ChannelGroup& group) {
  torch::Tensor scale;
  for (const auto& slice : group.slices) {
    const std::string& tensor = slice.tensor;
    const bool weight = tensor.size() > 7 && tensor.compare(tensor.size() - 7, 7, ".weight") == 0;
    if (slice.dim != 0 || !weight || layer_of(network, tensor)) continue;
    const torch::Tensor gamma = tensor_at(network, tensor);
    if (!gamma.defined()) continue;
    const torch::Tensor here = gamma.detach().narrow(0, slice.offset, group.channels).abs();
    scale = scale.defined() ? scale + here : here;
  }
  if (!scale.defined())
    throw Error("channel group " + group.name + " has no batch norm to rank its channels by scale");
  return scale;
}

// Cuts of every tensor the groups slice: per tensor path and dim, which indices along it stay
// (bool, on the CPU). Several groups cut one dim where it holds a concatenation of theirs.
using Cuts = std::map<std::string, std::map<int64_t, torch::Tensor>>;

void add_cut(Cuts& cuts, Network& network, const ChannelSlice& slice, const torch::Tensor& keep) {
  torch::Tensor& along = cuts[slice.tensor][slice.dim];
  if (!along.defined()) {
    const torch::Tensor tensor = tensor_at(network, slice.tensor);
    if (!tensor.defined()) throw Error("channel slice of " + slice.tensor + ": the model has no such tensor");
    along = torch::ones({tensor.size(slice.dim)}, torch::kBool);
  }
  along = along.logical_and(along_dim(keep, slice, along.numel()));
}

torch::Tensor cut(const Cuts& cuts, const std::string& name, torch::Tensor tensor) {
  const auto found = cuts.find(name);
  if (found == cuts.end()) return tensor;
  for (const auto& [dim, keep] : found->second)
    tensor = tensor.index_select(dim, keep.nonzero().flatten().to(tensor.device()));
  return tensor;
}

// The zoo model at the kept widths, its tensors cut.
std::unique_ptr<Network> smaller_zoo_model(NativeNetwork& from, const ModelMeta& meta, const Cuts& cuts) {
  auto smaller = std::make_unique<NativeNetwork>(meta);
  ZooNetImpl& to = smaller->model();
  torch::NoGradGuard no_grad;
  for (const auto& item : from.model().named_parameters())
    to.named_parameters()[item.key()].copy_(cut(cuts, item.key(), item.value()));
  for (const auto& item : from.model().named_buffers())
    to.named_buffers()[item.key()].copy_(cut(cuts, item.key(), item.value()));
  for (size_t i = 0; i < from.layers().size() && i < from.masks().size(); ++i) {
    if (from.masks()[i].defined())
      smaller->set_mask(i, cut(cuts, from.layers()[i].name + ".weight", from.masks()[i]).cpu());
  }
  smaller->to(from.layers().front().weight.device());
  return smaller;
}

// A copy of the TorchScript module whose tensors (and the masks saved beside them) are cut, its
// forward inlined; the code reads every shape from the tensors, except a depthwise convolution's
// groups, which are set.
std::unique_ptr<Network> smaller_script_model(ScriptNetwork& from, const Cuts& cuts) {
  // Copied without autograd history, so every tensor of the copy is a leaf that can train again.
  torch::NoGradGuard no_grad;
  torch::jit::Module copy = from.module().clone();
  for (const auto& item : cuts) {
    for (const std::string& name : {item.first, item.first + "_mask"}) {
      const c10::IValue value = attribute_at(copy, name);
      if (!value.isTensor()) continue;
      const torch::Tensor smaller = cut(cuts, item.first, value.toTensor()).clone();
      const size_t dot = name.rfind('.');
      torch::jit::Module owner = dot == std::string::npos
                                     ? copy
                                     : torch::jit::Module(attribute_at(copy, name.substr(0, dot)).toObject());
      owner.setattr(name.substr(dot == std::string::npos ? 0 : dot + 1), smaller);
    }
  }
  std::set<std::string> cut_weights;
  for (const auto& item : cuts) cut_weights.insert(item.first);
  inline_smaller_forward(copy, cut_weights);
  std::map<std::string, bool> trains;
  for (const auto& item : from.module().named_parameters()) trains[item.name] = item.value.requires_grad();
  for (const auto& item : copy.named_parameters()) item.value.set_requires_grad(trains[item.name]);
  auto smaller = std::make_unique<ScriptNetwork>(copy, from.path(), from.load_options());
  for (size_t i = 0; i < from.layers().size() && i < from.masks().size(); ++i) {
    if (!from.masks()[i].defined()) continue;
    const torch::Tensor mask = cut(cuts, from.layers()[i].name + ".weight", from.masks()[i]);
    if (!mask.all().item<bool>()) smaller->set_mask(i, mask);
  }
  return smaller;
}

}  // namespace

std::vector<ChannelGroup> channel_groups(Network& network) {
  if (auto* script = dynamic_cast<ScriptNetwork*>(&network)) {
    const ScriptChannels& found = script->channels();
    if (found.groups.empty()) {
      throw UsageError("granularity",
                       "channel: " + script->path() +
                           " has no channel groups this version can "
                           "remove (" +
                           (found.unresolved.empty() ? "no prunable layer" : found.unresolved.front()) +
                           "; `rdprune info` lists every layer's reason)");
    }
    return found.groups;
  }
  NativeNetwork& native = native_of(network);
  const auto& groups = native.model().channel_groups();
  if (groups.empty())
    throw UsageError("granularity", "channel: " + network.meta().arch + " has no channel groups");
  return groups;
}

std::vector<std::string> unremovable_channels(Network& network) {
  if (auto* script = dynamic_cast<ScriptNetwork*>(&network)) return script->channels().unresolved;
  return {};
}

ChannelCostModel channel_cost_model(const std::vector<ChannelGroup>& groups,
                                    const std::vector<LayerInfo>& infos) {
  ChannelCostModel model;
  for (const auto& group : groups) {
    model.groups.push_back(group.name);
    model.channels.push_back(group.channels);
  }
  for (const auto& info : infos) {
    ChannelLayerCost cost{info.name, info.weights, std::max(0.0, info.flops_per_weight), -1, {}, 0, {}};
    int64_t read = 0;         // input channels in groups
    int64_t per_channel = 1;  // inputs per channel: more than one after a flatten
    for (size_t g = 0; g < groups.size(); ++g) {
      for (const auto& slice : groups[g].slices) {
        if (!is_weight_of(slice.tensor, info.name)) continue;
        if (slice.dim == 0) {
          cost.out_group = static_cast<int64_t>(g);
          continue;
        }
        if (!cost.in_groups.empty() && slice.per_channel != per_channel)
          throw Error("channel groups: " + info.name + " reads groups with different inputs per channel");
        cost.in_groups.push_back(static_cast<int64_t>(g));
        read += groups[g].channels;
        per_channel = slice.per_channel;
      }
    }
    // A concatenation's parts that stay whole: the inputs no group holds.
    if (!cost.in_groups.empty() && info.shape.size() > 1) {
      cost.in_whole = info.shape[1] / per_channel - read;
      if (cost.in_whole < 0 || info.shape[1] % per_channel != 0)
        throw Error("channel groups: " + info.name + " reads more channels than its inputs hold");
    }
    model.layers.push_back(std::move(cost));
  }
  validate(model, "channel groups");
  return model;
}

torch::Tensor channel_scores(Network& network, const ChannelGroup& group, const std::string& criterion) {
  torch::NoGradGuard no_grad;
  torch::Tensor score;
  if (criterion == "magnitude") {
    // Summed over the producing layers: several where a residual addition ties their channels.
    for (const auto& slice : group.slices) {
      const auto producer = layer_of(network, slice.tensor);
      if (!producer || slice.dim != 0) continue;
      const torch::Tensor weight = network.layers()[*producer].weight.detach();
      const torch::Tensor l1 = weight.abs().reshape({group.channels, -1}).sum(1);
      score = score.defined() ? score + l1 : l1;
    }
    if (!score.defined())
      throw Error("channel group " + group.name + ": its producing layer is not prunable");
  } else if (criterion == "bn_scale") {
    score = batch_norm_scale(network, group);
  } else {
    throw Error("channel criterion '" + criterion + "', expected magnitude or bn_scale");
  }
  score = score.to(torch::kFloat64).cpu();
  return torch::where(in_use(network, group).cpu(), score, torch::full_like(score, -1.0));
}

torch::Tensor channel_order(Network& network, const ChannelGroup& group, const std::string& criterion) {
  return std::get<1>(torch::sort(channel_scores(network, group, criterion), /*stable=*/true, /*dim=*/0,
                                 /*descending=*/false));
}

void mask_channels(Network& network, const ChannelGroup& group, const torch::Tensor& keep) {
  for (const auto& slice : group.slices) {
    const auto layer = layer_of(network, slice.tensor);
    if (!layer) continue;
    const torch::Tensor& weight = network.layers()[*layer].weight;
    const torch::Tensor mask = mask_or_ones(network, *layer);
    network.set_mask(*layer, mask.logical_and(spread(keep.to(mask.device()), slice, weight.sizes())));
  }
  network.apply_masks();
}

torch::Tensor keep_last(const torch::Tensor& order, int64_t kept) {
  const int64_t channels = order.numel();
  torch::Tensor keep = torch::zeros({channels}, torch::kBool);
  keep.index_put_({order.slice(0, channels - kept)}, true);
  return keep;
}

void apply_channel_plan(Network& network, const Plan& plan, const std::string& source) {
  if (plan.granularity != "channel") throw Error(source + ": not a channel plan");
  const auto groups = channel_groups(network);
  if (groups.size() != plan.layers.size()) {
    throw Error(
        fmt::format("{}: plan has {} channel groups but the model has {}; was it made for another model?",
                    source, plan.layers.size(), groups.size()));
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].name != plan.layers[g].name || groups[g].channels != plan.layers[g].weights) {
      throw Error(fmt::format(
          "{}: group {} is {} ({} channels) in the plan but {} ({} channels) in the model", source, g,
          plan.layers[g].name, plan.layers[g].weights, groups[g].name, groups[g].channels));
    }
  }
  for (size_t g = 0; g < groups.size(); ++g)
    mask_channels(network, groups[g],
                  keep_last(channel_order(network, groups[g], plan.criterion), plan.layers[g].kept));
}

std::unique_ptr<Network> remove_pruned_channels(Network& network) {
  const auto groups = channel_groups(network);
  ModelMeta meta = network.meta();
  Cuts cuts;
  for (const auto& group : groups) {
    const torch::Tensor keep = in_use(network, group).cpu();
    const int64_t kept = keep.sum().item<int64_t>();
    if (kept == 0) throw Error("channel group " + group.name + " would keep no channel");
    meta.widths[group.name] = kept;
    for (const auto& slice : group.slices) add_cut(cuts, network, slice, keep);
  }
  if (auto* script = dynamic_cast<ScriptNetwork*>(&network)) {
    auto smaller = smaller_script_model(*script, cuts);
    smaller->meta().widths = meta.widths;  // reported; the module's tensors hold them
    return smaller;
  }
  return smaller_zoo_model(native_of(network), meta, cuts);
}

}  // namespace rdprune
