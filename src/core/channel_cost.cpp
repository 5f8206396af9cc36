#include "rdprune/channel_cost.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "artifact_json.h"
#include "channel_cost_json.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

double kept_fraction(int64_t kept, int64_t channels) {
  return channels <= 0 ? 1.0 : static_cast<double>(kept) / static_cast<double>(channels);
}

// Where `width` falls on `widths`: the cell's lower index and the weight of the upper one.
std::pair<size_t, double> locate(const std::vector<int64_t>& widths, int64_t width) {
  if (widths.size() == 1 || width <= widths.front()) return {0, 0.0};
  if (width >= widths.back()) return {widths.size() - 2, 1.0};
  const auto upper =
      static_cast<size_t>(std::upper_bound(widths.begin(), widths.end(), width) - widths.begin());
  const size_t lower = upper - 1;
  return {lower,
          static_cast<double>(width - widths[lower]) / static_cast<double>(widths[upper] - widths[lower])};
}

void check_table(const LatencyTable& table, const std::string& where) {
  auto ascending = [](const std::vector<int64_t>& widths) {
    if (widths.empty() || widths.front() < 1) return false;
    for (size_t i = 1; i < widths.size(); ++i)
      if (widths[i] <= widths[i - 1]) return false;
    return true;
  };
  if (!ascending(table.out_widths) || !ascending(table.in_widths))
    throw Error(where + ": latency widths must ascend from at least 1");
  if (table.seconds.size() != table.out_widths.size() * table.in_widths.size())
    throw Error(where + ": latency table size is not its widths' product");
  for (const double s : table.seconds)
    if (!(s >= 0) || !std::isfinite(s)) throw Error(where + ": latency seconds must be finite and >= 0");
}

// A layer's table: valid, and its widths reach its groups' full widths (one width where it has none).
void check_latency(const ChannelCostModel& model, const ChannelLayerCost& layer, const std::string& where) {
  check_table(layer.latency, where);
  auto reaches = [](const std::vector<int64_t>& widths, int64_t channels) {
    return channels <= 0 ? widths.size() == 1 : widths.back() == channels;
  };
  if (!reaches(layer.latency.out_widths, output_channels(model, layer)) ||
      !reaches(layer.latency.in_widths, input_channels(model, layer)))
    throw Error(where + ": latency widths must end at the group's channels (one width without a group)");
}

// The json of a layer's input side: "in_group" (a name or null) where it reads one group or none,
// else "in_groups" and "in_whole".
void input_side_to_json(const ChannelCostModel& model, const ChannelLayerCost& layer, nlohmann::json& entry) {
  if (layer.in_groups.size() <= 1 && layer.in_whole == 0) {
    entry["in_group"] = layer.in_groups.empty()
                            ? nlohmann::json()
                            : nlohmann::json(model.groups[static_cast<size_t>(layer.in_groups.front())]);
    return;
  }
  entry["in_groups"] = nlohmann::json::array();
  for (const int64_t g : layer.in_groups) entry["in_groups"].push_back(model.groups[static_cast<size_t>(g)]);
  entry["in_whole"] = layer.in_whole;
}

// What input_side_to_json wrote: "in_group" alone, or "in_groups" (an array) with "in_whole".
template <typename IndexOf>
void read_input_side(const nlohmann::json& entry, IndexOf index_of, const std::string& where,
                     ChannelLayerCost& layer) {
  if (entry.contains("in_group") == entry.contains("in_groups"))
    throw Error(where + ": expected either in_group or in_groups");
  if (entry.contains("in_group")) {
    if (entry.contains("in_whole")) throw Error(where + ": in_whole goes with in_groups, not in_group");
    if (const int64_t g = index_of(entry.at("in_group"), where); g >= 0) layer.in_groups.push_back(g);
    return;
  }
  const auto& groups = entry.at("in_groups");
  if (!groups.is_array() || !entry.contains("in_whole"))
    throw Error(where + ": in_groups must be an array of group names, with in_whole");
  for (const auto& name : groups) {
    if (!name.is_string()) throw Error(where + ": in_groups must be an array of group names");
    layer.in_groups.push_back(index_of(name, where));
  }
  layer.in_whole = count_from_json(entry.at("in_whole"), where + ": in_whole");
}

}  // namespace

bool ChannelLayerCost::reads(int64_t group) const {
  return std::find(in_groups.begin(), in_groups.end(), group) != in_groups.end();
}

int64_t output_channels(const ChannelCostModel& model, const ChannelLayerCost& layer) {
  return layer.out_group < 0 ? 0 : model.channels[static_cast<size_t>(layer.out_group)];
}

int64_t input_channels(const ChannelCostModel& model, const ChannelLayerCost& layer) {
  if (layer.in_groups.empty()) return 0;
  int64_t channels = layer.in_whole;
  for (const int64_t g : layer.in_groups) channels += model.channels[static_cast<size_t>(g)];
  return channels;
}

int64_t input_width(const ChannelLayerCost& layer, const std::vector<int64_t>& kept) {
  if (layer.in_groups.empty()) return 0;
  int64_t width = layer.in_whole;
  for (const int64_t g : layer.in_groups) width += kept[static_cast<size_t>(g)];
  return width;
}

double latency_at(const LatencyTable& table, int64_t out, int64_t in) {
  const auto [o, wo] = locate(table.out_widths, out);
  const auto [i, wi] = locate(table.in_widths, in);
  const size_t columns = table.in_widths.size();
  auto at = [&](size_t r, size_t c) {
    r = std::min(r, table.out_widths.size() - 1);
    c = std::min(c, columns - 1);
    return table.seconds[r * columns + c];
  };
  const double low = at(o, i) * (1 - wi) + at(o, i + 1) * wi;
  const double high = at(o + 1, i) * (1 - wi) + at(o + 1, i + 1) * wi;
  return low * (1 - wo) + high * wo;
}

void make_monotone(LatencyTable& table) {
  const size_t rows = table.out_widths.size();
  const size_t columns = table.in_widths.size();
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < columns; ++c) {
      double& cell = table.seconds[r * columns + c];
      if (r > 0) cell = std::max(cell, table.seconds[(r - 1) * columns + c]);
      if (c > 0) cell = std::max(cell, table.seconds[r * columns + c - 1]);
    }
  }
}

double layer_cost(const ChannelCostModel& model, const ChannelLayerCost& layer, int64_t out, int64_t in,
                  BudgetKind kind) {
  if (kind == BudgetKind::kLatency) {
    if (layer.latency.empty()) throw Error("a latency budget needs measured latency tables");
    return latency_at(layer.latency, out, in);
  }
  // Whole counts: the weights divide by each side's channels, so the product is exact.
  const double weights =
      std::round(static_cast<double>(layer.weights) * kept_fraction(out, output_channels(model, layer)) *
                 kept_fraction(in, input_channels(model, layer)));
  return kind == BudgetKind::kFlops ? weights * layer.flops_per_weight : weights;
}

double channel_cost(const ChannelCostModel& model, const std::vector<int64_t>& kept, BudgetKind kind) {
  if (kept.size() != model.channels.size()) {
    throw Error(
        fmt::format("a channel plan of {} groups for a model of {}", kept.size(), model.channels.size()));
  }
  for (size_t g = 0; g < kept.size(); ++g) {
    if (kept[g] < 0 || kept[g] > model.channels[g])
      throw Error(
          fmt::format("group {}: {} of {} channels kept", model.groups[g], kept[g], model.channels[g]));
  }
  auto width = [&](int64_t group) { return group < 0 ? int64_t{0} : kept[static_cast<size_t>(group)]; };
  double total = kind == BudgetKind::kLatency ? model.latency_rest : 0.0;
  for (const auto& layer : model.layers)
    total += layer_cost(model, layer, width(layer.out_group), input_width(layer, kept), kind);
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
    if (layer.out_group < -1 || layer.out_group >= groups)
      throw Error(where + ": names no group of the file");
    for (size_t i = 0; i < layer.in_groups.size(); ++i) {
      const int64_t g = layer.in_groups[i];
      if (g < 0 || g >= groups) throw Error(where + ": names no group of the file");
      if (std::find(layer.in_groups.begin(), layer.in_groups.begin() + static_cast<std::ptrdiff_t>(i), g) !=
          layer.in_groups.begin() + static_cast<std::ptrdiff_t>(i))
        throw Error(where + ": names group " + model.groups[static_cast<size_t>(g)] + " twice");
    }
    if (layer.in_whole < 0 || (layer.in_groups.empty() && layer.in_whole != 0))
      throw Error(where + ": in_whole must be >= 0, and 0 without input groups");
    for (const int64_t channels : {output_channels(model, layer), input_channels(model, layer)}) {
      if (channels > 0 && layer.weights % channels != 0)
        throw Error(where + ": its weights do not divide by its groups' channels");
    }
    if (layer.latency.empty() != !model.has_latency())
      throw Error(where + ": every layer has a latency table, or none");
    if (!layer.latency.empty()) check_latency(model, layer, where);
  }
  if (!(model.latency_rest >= 0) || !std::isfinite(model.latency_rest))
    throw Error(source + ": latency rest must be finite and >= 0");
}

nlohmann::json channel_costs_to_json(const ChannelCostModel& model) {
  auto name_of = [&](int64_t g) {
    return g < 0 ? nlohmann::json() : nlohmann::json(model.groups[static_cast<size_t>(g)]);
  };
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : model.layers) {
    nlohmann::json entry = {{"layer", layer.name},
                            {"weights", layer.weights},
                            {"flops_per_weight", layer.flops_per_weight},
                            {"out_group", name_of(layer.out_group)}};
    input_side_to_json(model, layer, entry);
    if (!layer.latency.empty()) {
      entry["latency"] = {{"out_widths", layer.latency.out_widths},
                          {"in_widths", layer.latency.in_widths},
                          {"seconds", layer.latency.seconds}};
    }
    layers.push_back(std::move(entry));
  }
  return layers;
}

ChannelCostModel channel_costs_from_json(const nlohmann::json& json, const std::vector<std::string>& groups,
                                         const std::vector<int64_t>& channels, const std::string& source) {
  ChannelCostModel model;
  model.groups = groups;
  model.channels = channels;
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
    read_input_side(entry, index_of, where, layer);
    if (entry.contains("latency")) {
      const auto& latency = entry.at("latency");
      layer.latency.out_widths = latency.at("out_widths").get<std::vector<int64_t>>();
      layer.latency.in_widths = latency.at("in_widths").get<std::vector<int64_t>>();
      layer.latency.seconds = latency.at("seconds").get<std::vector<double>>();
    }
    model.layers.push_back(std::move(layer));
  }
  validate(model, source);
  return model;
}

}  // namespace rdprune
