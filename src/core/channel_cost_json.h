// Internal: the channel cost model inside curves and plan files. Torch-free.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rdprune/channel_cost.h"
#include "rdprune/error.h"

namespace rdprune {

// One entry per layer, its groups by name ("out_group", "in_group"; null: none).
nlohmann::json channel_costs_to_json(const ChannelCostModel& model);
// Reads what channel_costs_to_json wrote, against the file's groups; validates. Throws Error.
ChannelCostModel channel_costs_from_json(const nlohmann::json& json, const std::vector<std::string>& groups,
                                         const std::vector<int64_t>& channels, const std::string& source);

// The channel costs of a curves or plan file whose entries (`name`, `weights` counting channels)
// are the groups.
template <typename Groups>
ChannelCostModel channel_costs_of(const nlohmann::json& json, const Groups& entries,
                                  const std::string& source) {
  std::vector<std::string> groups;
  std::vector<int64_t> channels;
  for (const auto& entry : entries) {
    groups.push_back(entry.name);
    channels.push_back(entry.weights);
  }
  return channel_costs_from_json(json, groups, channels, source);
}

// Checks that the file's entries are the cost model's groups, in order, and that `kept(entry)`
// (its fewest kept channels) is at least one: a group without channels cuts the network.
template <typename Groups, typename Kept>
void check_channel_groups(const ChannelCostModel& model, const Groups& entries, Kept kept,
                          const std::string& source) {
  validate(model, source);
  if (model.groups.size() != entries.size())
    throw Error(source + ": the channel costs name other groups than the file");
  for (size_t g = 0; g < entries.size(); ++g) {
    if (model.groups[g] != entries[g].name || model.channels[g] != entries[g].weights)
      throw Error(source + ": group " + entries[g].name + " differs from the channel costs' groups");
    if (kept(entries[g]) < 1)
      throw Error(source + ": group " + entries[g].name + " keeps no channel, which cuts the network");
  }
}

}  // namespace rdprune
