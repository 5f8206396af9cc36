// Internal: reading the JSON artifacts (curves, plans). Torch-free.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "rdprune/error.h"

namespace rdprune {

// Parses `text` as a JSON object whose "schema" field is `schema`. Throws Error naming `source`
// for text that is not JSON, not an object, or of another schema.
nlohmann::json parse_artifact(const std::string& text, const std::string& source, const std::string& schema);

// A count (weights, kept weights): a whole number in [0, 2^53]. Throws Error naming `where` for
// anything else, where a plain conversion would wrap a huge or fractional number silently.
int64_t count_from_json(const nlohmann::json& value, const std::string& where);

// Every layer of a curves or plan file names a different layer of the model. Throws Error naming
// `source` and the first name given twice.
template <typename Layers>
void check_unique_names(const Layers& layers, const std::string& source) {
  std::set<std::string> seen;
  for (const auto& layer : layers) {
    if (!seen.insert(layer.name).second) throw Error(source + ": layer '" + layer.name + "' appears twice");
  }
}

}  // namespace rdprune
