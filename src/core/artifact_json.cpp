#include "artifact_json.h"

#include <cmath>

#include <fmt/format.h>

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

int64_t count_from_json(const nlohmann::json& value, const std::string& where) {
  constexpr double kLargest = 9007199254740992.0;  // 2^53: every whole number below is exact
  if (value.is_number_integer() && !value.is_number_unsigned() && value.get<int64_t>() >= 0 &&
      value.get<int64_t>() <= static_cast<int64_t>(kLargest))
    return value.get<int64_t>();
  if (value.is_number_unsigned() && value.get<uint64_t>() <= static_cast<uint64_t>(kLargest))
    return static_cast<int64_t>(value.get<uint64_t>());
  if (value.is_number_float()) {
    const double number = value.get<double>();
    if (number >= 0 && number <= kLargest && std::floor(number) == number)
      return static_cast<int64_t>(number);
  }
  throw Error(fmt::format("{}: expected a whole number in [0, 2^53], got {}", where, value.dump()));
}

}  // namespace rdprune
