// Internal: reading the JSON artifacts (curves, plans). Torch-free.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace rdprune {

// Parses `text` as a JSON object whose "schema" field is `schema`. Throws Error naming `source`
// for text that is not JSON, not an object, or of another schema.
nlohmann::json parse_artifact(const std::string& text, const std::string& source, const std::string& schema);

}  // namespace rdprune
