#include "artifact_json.h"

#include "rdprune/error.h"

namespace rdprune {

nlohmann::json parse_artifact(const std::string& text, const std::string& source, const std::string& schema) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": not valid JSON (" + e.what() + ")");
  }
  if (!json.is_object()) throw Error(source + ": expected a JSON object with schema " + schema);
  const auto found = json.find("schema");
  const std::string actual = found != json.end() && found->is_string() ? found->get<std::string>() : "";
  if (actual != schema) throw Error(source + ": schema '" + actual + "', expected " + schema);
  return json;
}

}  // namespace rdprune
