// Internal: reading the JSON artifacts (curves, plans). Torch-free.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace rdprune {

// Parses `text` as a JSON object whose "schema" field is `schema`. Throws Error naming `source`
// for text that is not JSON, not an object, or of another schema.
nlohmann::json parse_artifact(const std::string& text, const std::string& source, const std::string& schema);

// A count (weights, kept weights): a whole number in [0, 2^53]. Throws Error naming `where` for
// anything else, where a plain conversion would wrap a huge or fractional number silently.
int64_t count_from_json(const nlohmann::json& value, const std::string& where);

}  // namespace rdprune
