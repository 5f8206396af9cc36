// rdprune info --model M: the prunable layers.
#include <algorithm>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "rdprune/channels.h"
#include "rdprune/error.h"
#include "rdprune/text.h"

namespace rdprune::cli {
namespace {

struct InfoFlags {
  CommonFlags common;
  LoadOptions load;
  DataFlags data;
  std::string model;
  bool dataset_given = false;
};

// The channel groups (docs/channels.md) as JSON, and a line saying what channel pruning can remove.
std::pair<nlohmann::json, std::string> channel_groups_of(Network& network) {
  nlohmann::json groups = nlohmann::json::array();
  try {
    std::string names;
    for (const auto& group : channel_groups(network)) {
      // The layers that make the group's channels (several where a residual addition ties them)
      // and those whose input side loses them.
      // Every tensor that holds them: channel c is index offset + c * per_channel (and the next
      // per_channel - 1) along dim.
      std::vector<std::string> producers;
      std::vector<std::string> readers;
      nlohmann::json slices = nlohmann::json::array();
      for (const auto& slice : group.slices) {
        const std::string layer = slice.tensor.substr(0, slice.tensor.rfind('.'));
        const bool prunable =
            std::any_of(network.layers().begin(), network.layers().end(),
                        [&](const PrunableLayer& l) { return l.name + ".weight" == slice.tensor; });
        if (prunable) (slice.dim == 0 ? producers : readers).push_back(layer);
        slices.push_back({{"tensor", slice.tensor},
                          {"dim", slice.dim},
                          {"offset", slice.offset},
                          {"per_channel", slice.per_channel}});
      }
      groups.push_back({{"name", group.name},
                        {"channels", group.channels},
                        {"producers", producers},
                        {"readers", readers},
                        {"slices", slices}});
      names += fmt::format("{}{} ({}{})", names.empty() ? "" : ", ", group.name, group.channels,
                           producers.size() > 1 ? fmt::format(", {} layers tied", producers.size()) : "");
    }
    return {groups, fmt::format("channel groups: {}\n", names)};
  } catch (const UsageError& e) {
    return {groups, fmt::format("channel groups: none ({})\n", e.what())};
  }
}

void run_info(const InfoFlags& flags) {
  apply_threads(flags.common);
  auto network = load_model(flags.model, flags.load);
  std::vector<int64_t> input_shape = network->meta().input_shape;
  if (!flags.data.input_shape.empty()) {
    input_shape = parse_shape(flags.data.input_shape, "--input-shape");
  } else if (input_shape.empty() && flags.dataset_given) {
    input_shape = load_dataset(dataset_options(flags.data, &network->meta())).test.sample_shape();
  }
  require_prunable_layers(*network, flags.model);
  std::vector<LayerInfo> infos;
  try {
    infos = layer_census(*network, input_shape);
  } catch (const Error& e) {
    throw Error(naming_file(flags.model, e.what()));
  }

  nlohmann::json layers = nlohmann::json::array();
  int64_t total_weights = 0;
  double total_pruned = 0;
  double total_flops = 0;
  size_t name_width = 28;
  for (const auto& info : infos) name_width = std::max(name_width, info.name.size());
  std::string table = fmt::format("{:<{}} {:<8} {:<16} {:>10} {:>12} {:>9}\n", "layer", name_width, "type",
                                  "shape", "weights", "flops/weight", "sparsity");
  for (size_t i = 0; i < infos.size(); ++i) {
    const auto& info = infos[i];
    total_weights += info.weights;
    total_pruned += info.sparsity * static_cast<double>(info.weights);
    total_flops += info.flops_per_weight * static_cast<double>(info.weights);
    nlohmann::json layer = {{"name", info.name},
                            {"type", info.type},
                            {"shape", info.shape},
                            {"weights", info.weights},
                            {"sparsity", info.sparsity},
                            {"calls", info.calls},
                            {"stage", network->stage_of(i)}};
    layer["flops_per_weight"] =
        info.flops_per_weight >= 0 ? nlohmann::json(info.flops_per_weight) : nlohmann::json();
    layers.push_back(layer);
    table += fmt::format("{:<{}} {:<8} {:<16} {:>10} {:>12} {:>8}%{}\n", info.name, name_width, info.type,
                         format_shape(info.shape), info.weights,
                         info.flops_per_weight >= 0 ? fmt::format("{:g}", info.flops_per_weight) : "?",
                         format_percent(info.sparsity),
                         info.calls > 1 ? "  (shared: called " + std::to_string(info.calls) + "x)" : "");
  }
  const bool flops_known = !input_shape.empty();
  const double sparsity = total_weights > 0 ? total_pruned / static_cast<double>(total_weights) : 0.0;
  nlohmann::json result = {{"model", flags.model},
                           {"format", network->format()},
                           {"arch", network->meta().arch},
                           {"input_shape", input_shape},
                           {"num_classes", network->meta().num_classes},
                           {"layers", layers},
                           {"total_weights", total_weights},
                           {"stages", network->num_stages()},
                           {"sparsity", sparsity}};
  result["total_flops"] = flops_known ? nlohmann::json(total_flops) : nlohmann::json();
  const auto [groups, groups_line] = channel_groups_of(*network);
  result["channel_groups"] = groups;
  // Where a TorchScript graph ties channels this version does not follow: each layer and why.
  const std::vector<std::string> whole = unremovable_channels(*network);
  result["channels_kept_whole"] = whole;
  // A TorchScript model's architecture is its format: name it once.
  const std::string kind = network->meta().arch == network->format()
                               ? network->format()
                               : network->meta().arch + ", " + network->format();
  std::string human = fmt::format("{} ({}), input {}\n", flags.model, kind,
                                  input_shape.empty() ? "unknown" : format_shape(input_shape));
  human += table;
  human += fmt::format("total: {} layers, {} weights, sparsity {}%, {}\n", infos.size(), total_weights,
                       format_percent(sparsity),
                       flops_known ? fmt::format("{:.4g} MACs per sample", total_flops)
                                   : std::string("FLOPs unknown (pass --input-shape C,H,W or --dataset)"));
  human += network->num_stages() > 1
               ? fmt::format("forward in {} stages: curves run each layer's levels from its own stage on\n",
                             network->num_stages())
               : std::string("forward in 1 stage: curves run the whole forward for every level\n");
  human += groups_line;
  for (const auto& reason : whole) human += "  channels kept whole: " + reason + "\n";
  emit(flags.common, result, human);
}

}  // namespace

void register_info(CLI::App& app) {
  auto flags = std::make_shared<InfoFlags>();
  auto* command = app.add_subcommand(
      "info", "List the prunable layers: name, shape, weights, FLOPs per weight, sparsity");
  command->add_option("--model", flags->model, "rdprune checkpoint or TorchScript file")->required();
  add_common_flags(*command, flags->common);
  add_load_flags(*command, flags->load);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags, command] {
    flags->dataset_given = command->count("--dataset") > 0;
    run_info(*flags);
  });
}

}  // namespace rdprune::cli
