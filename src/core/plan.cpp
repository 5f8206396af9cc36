#include "rdprune/plan.h"

#include <cmath>
#include <set>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "artifact_json.h"
#include "channel_cost_json.h"
#include "rdprune/baselines.h"
#include "rdprune/error.h"

namespace rdprune {

BudgetKind parse_budget(const std::string& text) {
  if (text == "params") return BudgetKind::kParams;
  if (text == "flops") return BudgetKind::kFlops;
  if (text == "latency") return BudgetKind::kLatency;
  throw UsageError("budget", "expected params, flops or latency, got '" + text + "'");
}

std::string to_string(BudgetKind budget) {
  switch (budget) {
    case BudgetKind::kParams:
      return "params";
    case BudgetKind::kFlops:
      return "flops";
    case BudgetKind::kLatency:
      return "latency";
  }
  return "params";
}

std::vector<int64_t> Plan::kept_channels() const {
  std::vector<int64_t> kept;
  for (const auto& layer : layers) kept.push_back(layer.kept);
  return kept;
}

int64_t Plan::total_weights() const {
  if (granularity == "channel")
    return static_cast<int64_t>(channel_cost(channel_costs, channel_costs.channels, BudgetKind::kParams));
  int64_t total = 0;
  for (const auto& layer : layers) total += layer.weights;
  return total;
}

int64_t Plan::kept_weights() const {
  if (granularity == "channel")
    return static_cast<int64_t>(channel_cost(channel_costs, kept_channels(), BudgetKind::kParams));
  int64_t total = 0;
  for (const auto& layer : layers) total += layer.kept;
  return total;
}

double Plan::dense_flops() const {
  if (granularity == "channel")
    return channel_cost(channel_costs, channel_costs.channels, BudgetKind::kFlops);
  double total = 0;
  for (const auto& layer : layers) total += static_cast<double>(layer.weights) * layer.flops_per_weight;
  return total;
}

double Plan::kept_flops() const {
  if (granularity == "channel") return channel_cost(channel_costs, kept_channels(), BudgetKind::kFlops);
  double total = 0;
  for (const auto& layer : layers) total += static_cast<double>(layer.kept) * layer.flops_per_weight;
  return total;
}

double Plan::sparsity_achieved() const {
  const int64_t total = total_weights();
  // Pruned over total, not 1 - kept over total: 6147 of 61470 is then exactly the double 0.1, where
  // the subtraction would fall an ulp below a target it meets.
  return total > 0 ? static_cast<double>(total - kept_weights()) / static_cast<double>(total) : 0.0;
}

double Plan::flops_sparsity_achieved() const {
  const double dense = dense_flops();
  return dense > 0 ? (dense - kept_flops()) / dense : 0.0;
}

double Plan::dense_latency() const {
  if (granularity != "channel" || !channel_costs.has_latency()) return 0;
  return channel_cost(channel_costs, channel_costs.channels, BudgetKind::kLatency);
}

double Plan::kept_latency() const {
  if (granularity != "channel" || !channel_costs.has_latency()) return 0;
  return channel_cost(channel_costs, kept_channels(), BudgetKind::kLatency);
}

double Plan::latency_sparsity_achieved() const {
  const double dense = dense_latency();
  return dense > 0 ? (dense - kept_latency()) / dense : 0.0;
}

double budget_for(BudgetKind budget, double sparsity_target, int64_t total_weights, double dense_flops) {
  if (budget == BudgetKind::kLatency)
    throw UsageError("budget", "latency budgets are for channel plans (--granularity channel)");
  if (budget == BudgetKind::kParams) {
    return std::floor((1.0 - sparsity_target) * static_cast<double>(total_weights) + 1e-9);
  }
  // With no FLOPs at all every plan meets any FLOPs budget, and the target would mean nothing.
  if (!(dense_flops > 0) || !std::isfinite(dense_flops))
    throw Error(
        fmt::format("a FLOPs budget: the layers count {} FLOPs in all; the budget needs some", dense_flops));
  return (1.0 - sparsity_target) * dense_flops;
}

void check_sparsity_target(double sparsity_target, const std::string& option) {
  if (!(sparsity_target >= 0 && sparsity_target < 1)) {
    throw UsageError(option, fmt::format("{} is outside [0, 1)", sparsity_target));
  }
}

void validate(const Plan& plan, const std::string& source) {
  if (plan.layers.empty()) throw Error(source + ": plan has no layers");
  check_unique_names(plan.layers, source);
  if (!(plan.sparsity_target >= 0 && plan.sparsity_target < 1)) {
    throw Error(fmt::format("{}: sparsity_target {} outside [0, 1)", source, plan.sparsity_target));
  }
  for (const auto& layer : plan.layers) {
    if (layer.weights <= 0 || layer.kept < 0 || layer.kept > layer.weights) {
      throw Error(fmt::format("{}: layer {}: kept {} of {} weights is impossible", source, layer.name,
                              layer.kept, layer.weights));
    }
    if (!(layer.flops_per_weight >= 0) || !std::isfinite(layer.flops_per_weight)) {
      throw Error(source + ": layer " + layer.name + ": flops_per_weight must be finite and >= 0");
    }
  }
  if (plan.granularity != "weight" && plan.granularity != "channel")
    throw Error(source + ": granularity '" + plan.granularity + "', expected weight or channel");
  if (plan.budget == BudgetKind::kLatency &&
      !(plan.granularity == "channel" && plan.channel_costs.has_latency()))
    throw Error(source + ": a latency budget needs a channel plan with latency tables");
  const char* second = plan.granularity == "channel" ? "bn_scale" : "wanda";
  if (plan.criterion != "magnitude" && plan.criterion != second) {
    throw Error(fmt::format("{}: criterion '{}' for a {} plan, expected magnitude or {}", source,
                            plan.criterion, plan.granularity, second));
  }
  if (plan.granularity == "channel") {
    check_channel_groups(
        plan.channel_costs, plan.layers, [](const PlanLayer& g) { return g.kept; }, source);
  }
}

std::string to_json(const Plan& plan) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : plan.layers) {
    layers.push_back({{"name", layer.name},
                      {"weights", layer.weights},
                      {"kept", layer.kept},
                      {"sparsity", layer.sparsity()},
                      {"flops_per_weight", layer.flops_per_weight}});
  }
  nlohmann::json json = {{"schema", kPlanSchema},
                         {"method", plan.method},
                         {"criterion", plan.criterion},
                         {"budget", to_string(plan.budget)},
                         {"sparsity_target", plan.sparsity_target},
                         {"sparsity_achieved", plan.sparsity_achieved()},
                         {"flops_sparsity_achieved", plan.flops_sparsity_achieved()},
                         {"total_weights", plan.total_weights()},
                         {"kept_weights", plan.kept_weights()},
                         {"dense_flops", plan.dense_flops()},
                         {"kept_flops", plan.kept_flops()},
                         {"layers", layers}};
  json["predicted_distortion"] =
      plan.predicted_distortion ? nlohmann::json(*plan.predicted_distortion) : nlohmann::json();
  if (!plan.solver.empty()) json["solver"] = plan.solver;
  if (!plan.fingerprint.empty()) json["fingerprint"] = plan.fingerprint;
  if (plan.allow_empty) json["allow_empty"] = true;
  if (plan.granularity == "channel") {
    json["granularity"] = plan.granularity;
    json["channel_costs"] = channel_costs_to_json(plan.channel_costs);
    if (plan.channel_costs.has_latency()) {
      json["latency"] = {{"setting", plan.channel_costs.latency_setting},
                         {"rest_seconds", plan.channel_costs.latency_rest},
                         {"dense_seconds", plan.dense_latency()},
                         {"kept_seconds", plan.kept_latency()},
                         {"sparsity_achieved", plan.latency_sparsity_achieved()}};
    }
  }
  return json.dump(1) + "\n";
}

Plan plan_from_json(const std::string& text, const std::string& source) {
  const nlohmann::json json = parse_artifact(text, source, kPlanSchema);
  try {
    Plan plan;
    plan.method = json.at("method").get<std::string>();
    plan.budget = parse_budget(json.at("budget").get<std::string>());
    plan.sparsity_target = json.at("sparsity_target").get<double>();
    if (json.contains("predicted_distortion") && json["predicted_distortion"].is_number()) {
      plan.predicted_distortion = json["predicted_distortion"].get<double>();
    }
    plan.solver = json.value("solver", "");
    plan.criterion = json.value("criterion", "magnitude");
    plan.fingerprint = json.value("fingerprint", "");
    plan.allow_empty = json.value("allow_empty", false);
    for (const auto& entry : json.at("layers")) {
      PlanLayer layer;
      layer.name = entry.at("name").get<std::string>();
      const std::string where = source + ": layer " + layer.name;
      layer.weights = count_from_json(entry.at("weights"), where + ": weights");
      layer.kept = count_from_json(entry.at("kept"), where + ": kept");
      layer.flops_per_weight = entry.value("flops_per_weight", 0.0);
      plan.layers.push_back(std::move(layer));
    }
    plan.granularity = json.value("granularity", "weight");
    if (plan.granularity == "channel") {
      plan.channel_costs = channel_costs_of(json.at("channel_costs"), plan.layers, source);
      if (json.contains("latency")) {
        plan.channel_costs.latency_setting = json["latency"].at("setting").get<std::string>();
        plan.channel_costs.latency_rest = json["latency"].at("rest_seconds").get<double>();
      }
    }
    validate(plan, source);
    return plan;
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": malformed plan file (" + e.what() + ")");
  } catch (const UsageError& e) {
    throw Error(source + ": " + e.what());
  }
}

void check_plan_matches(const Plan& plan, const std::vector<LayerInfo>& layers, const std::string& source) {
  if (plan.layers.size() != layers.size()) {
    std::set<std::string> names;
    for (const auto& layer : layers) names.insert(layer.name);
    std::string unknown;
    for (const auto& entry : plan.layers) {
      if (names.count(entry.name) == 0) {
        unknown = fmt::format(" ({} is no layer of the model; a plan naming embeddings needs them pruned)",
                              entry.name);
        break;
      }
    }
    throw Error(fmt::format("{}: plan has {} layers but the model has {}{}; was it made for another model?",
                            source, plan.layers.size(), layers.size(), unknown));
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    if (plan.layers[i].name != layers[i].name || plan.layers[i].weights != layers[i].weights) {
      throw Error(fmt::format("{}: layer {} is {} ({} weights) in the plan but {} ({} weights) in the model",
                              source, i, plan.layers[i].name, plan.layers[i].weights, layers[i].name,
                              layers[i].weights));
    }
  }
}

void check_no_layer_emptied(const Plan& plan, const std::vector<LayerInfo>& layers, bool allow_empty,
                            const std::string& source) {
  if (plan.allow_empty || allow_empty) return;
  check_plan_matches(plan, layers, source);
  for (size_t i = 0; i < layers.size(); ++i) {
    if (plan.layers[i].kept == 0 && unpruned(layers[i]) > 0) {
      throw Error(
          fmt::format("{}: layer {} would keep none of its {} weights, which cuts the network there; "
                      "allowing empty layers prunes it anyway",
                      source, layers[i].name, unpruned(layers[i])));
    }
  }
}

}  // namespace rdprune
