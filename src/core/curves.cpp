#include "rdprune/curves.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "artifact_json.h"
#include "channel_cost_json.h"
#include "rdprune/error.h"

namespace rdprune {

std::vector<double> level_grid(int64_t steps) {
  if (steps < 1 || steps > 100000) throw UsageError("levels", "expected a step count in [1, 100000]");
  std::vector<double> grid(static_cast<size_t>(steps + 1));
  for (int64_t k = 0; k <= steps; ++k)
    grid[static_cast<size_t>(k)] = static_cast<double>(k) / static_cast<double>(steps);
  return grid;
}

std::vector<double> levels_from(const std::vector<double>& grid, double sparsity_current) {
  std::vector<double> levels = {sparsity_current};
  for (double level : grid) {
    if (level > sparsity_current + 1e-12) levels.push_back(level);
  }
  return levels;
}

std::vector<double> layer_levels(const std::vector<double>& grid, double sparsity_current, int64_t weights,
                                 bool tail) {
  std::vector<double> levels = levels_from(grid, sparsity_current);
  if (weights < 2) return levels;
  if (tail) {
    auto full = levels.begin();
    while (full != levels.end() && *full < 1.0 - 1e-12) ++full;
    if (full != levels.begin()) {
      const double base = *(full - 1);
      double density = 1.0 - base;
      int64_t previous = kept_at(base, weights);
      std::vector<double> extra;
      for (int halving = 0; halving < 64; ++halving) {
        density /= 2;
        const double level = 1.0 - density;
        const int64_t kept = kept_at(level, weights);
        if (kept <= 1) break;
        if (kept < previous) {
          extra.push_back(level);
          previous = kept;
        }
      }
      levels.insert(full, extra.begin(), extra.end());
    }
  }
  const double single = static_cast<double>(weights - 1) / static_cast<double>(weights);
  // Insert before the first level that keeps at most one weight, if no level keeps exactly one.
  auto at = levels.begin();
  while (at != levels.end() && kept_at(*at, weights) > 1) ++at;
  if ((at == levels.end() || kept_at(*at, weights) == 0) && single > sparsity_current + 1e-12)
    levels.insert(at, single);
  return levels;
}

int64_t kept_at(double sparsity, int64_t weights) {
  // A small tolerance so that 0.3 * 10 counts as 3 despite 0.3's binary representation.
  return weights - static_cast<int64_t>(std::floor(sparsity * static_cast<double>(weights) + 1e-9));
}

void validate(const CurveSet& curves, const std::string& source) {
  if (curves.metric != "mse" && curves.metric != "worst" && curves.metric != "kl") {
    throw Error(source + ": metric '" + curves.metric + "', expected mse, worst or kl");
  }
  if (curves.layers.empty()) throw Error(source + ": no layers");
  check_unique_names(curves.layers, source);
  if (curves.granularity != "weight" && curves.granularity != "channel")
    throw Error(source + ": granularity '" + curves.granularity + "', expected weight or channel");
  if (curves.granularity == "channel") {
    check_channel_groups(
        curves.channel_costs, curves.layers,
        [](const LayerCurve& g) { return g.kept.empty() ? int64_t{0} : g.kept.back(); }, source);
  }
  for (const auto& layer : curves.layers) {
    const std::string where = source + ": layer " + layer.name;
    if (layer.weights <= 0) throw Error(where + ": weights must be positive");
    if (!(layer.flops_per_weight >= 0) || !std::isfinite(layer.flops_per_weight)) {
      throw Error(where + ": flops_per_weight must be a finite number >= 0");
    }
    if (!(layer.sparsity_current >= 0 && layer.sparsity_current <= 1)) {
      throw Error(where + ": sparsity_current must be in [0, 1]");
    }
    const size_t n = layer.sparsity.size();
    if (n == 0) throw Error(where + ": no levels");
    if (layer.kept.size() != n || layer.distortion.size() != n) {
      throw Error(fmt::format("{}: sparsity, kept and distortion have {}, {} and {} entries; expected equal",
                              where, n, layer.kept.size(), layer.distortion.size()));
    }
    for (size_t k = 0; k < n; ++k) {
      const double s = layer.sparsity[k];
      if (!(s >= 0 && s <= 1)) throw Error(fmt::format("{}: sparsity[{}] = {} outside [0, 1]", where, k, s));
      if (k > 0 && !(s > layer.sparsity[k - 1])) {
        throw Error(fmt::format("{}: sparsity grid is not increasing at index {} ({} after {})", where, k, s,
                                layer.sparsity[k - 1]));
      }
      if (s + 1e-9 < layer.sparsity_current) {
        throw Error(fmt::format("{}: level {} is below the layer's current sparsity {}", where, s,
                                layer.sparsity_current));
      }
      if (layer.kept[k] != kept_at(s, layer.weights)) {
        throw Error(fmt::format("{}: kept[{}] = {} but sparsity {} of {} weights keeps {}", where, k,
                                layer.kept[k], s, layer.weights, kept_at(s, layer.weights)));
      }
      const double d = layer.distortion[k];
      if (!std::isfinite(d)) throw Error(fmt::format("{}: distortion[{}] is {}", where, k, d));
      if (d < 0) throw Error(fmt::format("{}: distortion[{}] = {} is negative", where, k, d));
    }
  }
}

std::string to_json(const CurveSet& curves) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : curves.layers) {
    layers.push_back({{"name", layer.name},
                      {"weights", layer.weights},
                      {"flops_per_weight", layer.flops_per_weight},
                      {"sparsity_current", layer.sparsity_current},
                      {"sparsity", layer.sparsity},
                      {"kept", layer.kept},
                      {"distortion", layer.distortion}});
  }
  nlohmann::json json = {{"schema", kCurvesSchema},
                         {"metric", curves.metric},
                         {"criterion", curves.criterion},
                         {"calibration", curves.calibration},
                         {"fingerprint", curves.fingerprint},
                         {"levels", curves.levels},
                         {"bn_recalibrated", curves.bn_recalibrated},
                         {"layers", layers}};
  if (curves.granularity == "channel") {
    json["granularity"] = curves.granularity;
    json["channel_costs"] = channel_costs_to_json(curves.channel_costs);
  }
  return json.dump(1) + "\n";
}

namespace {

// nlohmann writes NaN and infinity as null; read null back as NaN so validation names it.
std::vector<double> numbers(const nlohmann::json& array, const std::string& where) {
  if (!array.is_array()) throw Error(where + ": expected an array");
  std::vector<double> out;
  for (const auto& value : array) {
    if (value.is_null()) {
      out.push_back(std::nan(""));
    } else if (value.is_number()) {
      out.push_back(value.get<double>());
    } else {
      throw Error(where + ": expected numbers");
    }
  }
  return out;
}

}  // namespace

CurveSet curves_from_json(const std::string& text, const std::string& source) {
  const nlohmann::json json = parse_artifact(text, source, kCurvesSchema);
  try {
    CurveSet curves;
    curves.metric = json.at("metric").get<std::string>();
    curves.calibration = json.value("calibration", "");
    curves.criterion = json.value("criterion", "magnitude");
    if (curves.criterion != "magnitude" && curves.criterion != "wanda")
      throw Error(source + ": criterion '" + curves.criterion + "', expected magnitude or wanda");
    curves.fingerprint = json.value("fingerprint", "");
    curves.levels = json.value("levels", int64_t{0});
    curves.bn_recalibrated = json.value("bn_recalibrated", false);
    for (const auto& entry : json.at("layers")) {
      LayerCurve layer;
      layer.name = entry.at("name").get<std::string>();
      const std::string where = source + ": layer " + layer.name;
      layer.weights = count_from_json(entry.at("weights"), where + ": weights");
      layer.flops_per_weight = entry.at("flops_per_weight").get<double>();
      layer.sparsity_current = entry.value("sparsity_current", 0.0);
      layer.sparsity = numbers(entry.at("sparsity"), where + ": sparsity");
      const auto& kept = entry.at("kept");
      if (!kept.is_array()) throw Error(where + ": kept: expected an array");
      for (const auto& count : kept) layer.kept.push_back(count_from_json(count, where + ": kept"));
      layer.distortion = numbers(entry.at("distortion"), where + ": distortion");
      curves.layers.push_back(std::move(layer));
    }
    curves.granularity = json.value("granularity", "weight");
    if (curves.granularity == "channel")
      curves.channel_costs = channel_costs_of(json.at("channel_costs"), curves.layers, source);
    validate(curves, source);
    return curves;
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": malformed curves file (" + e.what() + ")");
  }
}

}  // namespace rdprune
