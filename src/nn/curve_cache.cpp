#include "curve_cache.h"

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rdprune/atomic_file.h"
#include "rdprune/tensor_hash.h"

namespace rdprune {

std::string curve_cache_key(const std::string& fingerprint, const std::string& calibration,
                            const std::string& criterion, const CurveOptions& options) {
  Fnv hash;
  hash.add(fingerprint);
  hash.add(calibration);
  if (criterion != "magnitude") hash.add(criterion);  // magnitude keys stay what they were
  hash.add(options.metric);
  hash.add(std::to_string(options.levels));
  if (options.tail) hash.add(std::string("geometric tail"));
  if (options.recalibrate_bn) hash.add(std::string("bn-recalibrated"));
  if (!options.context_kept.empty()) {
    hash.add(std::string("context"));
    hash.add(options.context_kept.data(), options.context_kept.size() * sizeof(int64_t));
  }
  return hash.hex();
}

CurveCache::CurveCache(const std::string& dir, const std::string& key, Sink* sink) : key_(key) {
  if (dir.empty()) return;
  std::filesystem::create_directories(dir);
  path_ = (std::filesystem::path(dir) / ("curves-" + key + ".json")).string();
  if (!std::filesystem::exists(path_)) return;
  try {
    const auto json = nlohmann::json::parse(read_file(path_));
    if (json.value("key", "") != key) return;
    layers_ = curves_from_json(json.at("curves").dump(), path_).layers;
    for (const auto& cost : json.value("costs", nlohmann::json::array()))
      costs_.push_back({cost.at("seconds").get<double>(), cost.at("forward_samples").get<int64_t>()});
    if (costs_.size() != layers_.size()) costs_.clear();
  } catch (const std::exception& e) {
    layers_.clear();
    costs_.clear();
    note(sink, "curves: ignoring unreadable cache " + path_ + " (" + e.what() + ")");
    return;
  }
  if (!layers_.empty()) note(sink, fmt::format("curves: reusing {} layers from {}", layers_.size(), path_));
}

bool CurveCache::has(size_t i, const std::string& name, int64_t weights) const {
  return i < layers_.size() && layers_[i].name == name && layers_[i].weights == weights;
}

LayerCurve CurveCache::reuse(size_t i, Network& network) {
  const LayerCost cost = i < costs_.size() ? costs_[i] : LayerCost{};
  network.charge_reused(cost.seconds, cost.forward_samples);
  measuring_.push_back(cost);
  return layers_.at(i);
}

void CurveCache::record(const CurveSet& curves, const LayerCost& cost) {
  measuring_.push_back(cost);
  if (path_.empty()) return;
  nlohmann::json json = {{"key", key_}, {"curves", nlohmann::json::parse(to_json(curves))}};
  json["costs"] = nlohmann::json::array();
  for (const LayerCost& each : measuring_)
    json["costs"].push_back({{"seconds", each.seconds}, {"forward_samples", each.forward_samples}});
  write_file_atomic(path_, json.dump());
}

}  // namespace rdprune
