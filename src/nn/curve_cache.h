// Internal: the curve cache. Layers finished by an earlier measurement with the same key (model,
// calibration, metric, levels, context), each with what measuring it cost: a run resumes where one
// stopped, and a run that reuses a curve is charged what it cost (Network::charge_reused), so that
// runs sharing a cache each state their whole cost.
#pragma once

#include <string>
#include <vector>

#include "rdprune/curves.h"
#include "rdprune/distortion.h"
#include "rdprune/network.h"
#include "rdprune/sink.h"

namespace rdprune {

std::string curve_cache_key(const std::string& fingerprint, const std::string& calibration,
                            const std::string& criterion, const CurveOptions& options);

// What measuring one layer's curve cost.
struct LayerCost {
  double seconds = 0;
  int64_t forward_samples = 0;
};

class CurveCache {
 public:
  // The cache file of `key` in `dir` (created); an empty dir: no cache. An unreadable file is
  // ignored with a note.
  CurveCache(const std::string& dir, const std::string& key, Sink* sink);

  // True when layer i, of this name and size, is cached.
  bool has(size_t i, const std::string& name, int64_t weights) const;
  // Layer i's cached curve, its cost charged to `network`.
  LayerCurve reuse(size_t i, Network& network);
  // The last layer of `curves` was just measured at `cost`: writes the file (atomically) with it.
  void record(const CurveSet& curves, const LayerCost& cost);

 private:
  std::string path_;  // empty: no cache
  std::string key_;
  std::vector<LayerCurve> layers_;
  std::vector<LayerCost> costs_;      // aligned with layers_; empty for caches written before costs
  std::vector<LayerCost> measuring_;  // the costs of the curves measured or reused so far
};

}  // namespace rdprune
