#include "rdprune/channel_cost.h"

#include <cmath>

#include <fmt/format.h>

#include "artifact_json.h"
#include "channel_cost_json.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

double kept_fraction(const ChannelCostModel& model, const std::vector<int64_t>& kept, int64_t group) {
  if (group < 0) return 1.0;
  const auto g = static_cast<size_t>(group);
  return static_cast<double>(kept[g]) / static_cast<double>(model.channels[g]);
}

}  // namespace

double channel_cost(const ChannelCostModel& model, const std::vector<int64_t>& kept, bool flops) {
  if (kept.size() != model.channels.size()) {
    throw Error(
        fmt::format("a channel plan of {} groups for a model of {}", kept.size(), model.channels.size()));
  }
  for (size_t g = 0; g < kept.size(); ++g) {
    if (kept[g] < 0 || kept[g] > model.channels[g])
      throw Error(
          fmt::format("group {}: {} of {} channels kept", model.groups[g], kept[g], model.channels[g]));
  }
  double total = 0;
  for (const auto& layer : model.layers) {
    // Whole counts: the weights divide by each side's channels, so the product is exact.
    const double weights =
        std::round(static_cast<double>(layer.weights) * kept_fraction(model, kept, layer.out_group) *
                   kept_fraction(model, kept, layer.in_group));
    total += flops ? weights * layer.flops_per_weight : weights;
  }
  return total;
}

void validate(const ChannelCostModel& model, const std::string& source) {
  if (model.groups.size() != model.channels.size())
    throw Error(source + ": channel costs: groups and channel counts differ in number");
  check_unique_names(model.layers, source);
  for (size_t g = 0; g < model.groups.size(); ++g) {
    if (model.channels[g] <= 0)
      throw Error(fmt::format("{}: group {} has {} channels", source, model.groups[g], model.channels[g]));
  }
  const auto groups = static_cast<int64_t>(model.groups.size());
  for (const auto& layer : model.layers) {
    const std::string where = source + ": channel costs of " + layer.name;
    if (layer.weights <= 0) throw Error(where + ": weights must be positive");
    if (!(layer.flops_per_weight >= 0) || !std::isfinite(layer.flops_per_weight))
      throw Error(where + ": flops_per_weight must be finite and >= 0");
    for (const int64_t g : {layer.out_group, layer.in_group}) {
      if (g < -1 || g >= groups) throw Error(where + ": names no group of the file");
      if (g >= 0 && layer.weights % model.channels[static_cast<size_t>(g)] != 0)
        throw Error(where + ": its weights do not divide by its group's channels");
    }
  }
}

nlohmann::json channel_costs_to_json(const ChannelCostModel& model) {
  auto name_of = [&](int64_t g) {
    return g < 0 ? nlohmann::json() : nlohmann::json(model.groups[static_cast<size_t>(g)]);
  };
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : model.layers) {
    layers.push_back({{"layer", layer.name},
                      {"weights", layer.weights},
                      {"flops_per_weight", layer.flops_per_weight},
                      {"out_group", name_of(layer.out_group)},
                      {"in_group", name_of(layer.in_group)}});
  }
  return layers;
}

ChannelCostModel channel_costs_from_json(const nlohmann::json& json, const std::vector<std::string>& groups,
                                         const std::vector<int64_t>& channels, const std::string& source) {
  ChannelCostModel model{groups, channels, {}};
  auto index_of = [&](const nlohmann::json& name, const std::string& where) -> int64_t {
    if (name.is_null()) return -1;
    for (size_t g = 0; g < groups.size(); ++g)
      if (groups[g] == name.get<std::string>()) return static_cast<int64_t>(g);
    throw Error(where + ": group " + name.get<std::string>() + " is not in the file");
  };
  if (!json.is_array()) throw Error(source + ": channel_costs: expected an array");
  for (const auto& entry : json) {
    ChannelLayerCost layer;
    layer.name = entry.at("layer").get<std::string>();
    const std::string where = source + ": channel costs of " + layer.name;
    layer.weights = count_from_json(entry.at("weights"), where + ": weights");
    layer.flops_per_weight = entry.at("flops_per_weight").get<double>();
    layer.out_group = index_of(entry.at("out_group"), where);
    layer.in_group = index_of(entry.at("in_group"), where);
    model.layers.push_back(std::move(layer));
  }
  validate(model, source);
  return model;
}

}  // namespace rdprune
