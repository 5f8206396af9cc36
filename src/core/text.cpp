#include "rdprune/text.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "rdprune/error.h"

namespace rdprune {

void require_one_of(const std::string& option, const std::string& value,
                    const std::vector<std::string>& known, const std::string& what) {
  if (std::find(known.begin(), known.end(), value) != known.end()) return;
  throw UsageError(option, fmt::format("unknown {} '{}' (known: {})", what, value, fmt::join(known, ", ")));
}

std::vector<std::string> split_list(const std::string& text, const std::string& option) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (item.empty()) throw UsageError(option, "empty entry in list '" + text + "'");
    items.push_back(item);
  }
  if (items.empty()) throw UsageError(option, "expected a comma-separated list, got '" + text + "'");
  return items;
}

namespace {

// The whole of `text` as an integer, or nothing.
std::optional<long long> whole_integer(const std::string& text) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::vector<int64_t> parse_shape(const std::string& text, const std::string& option) {
  std::vector<int64_t> shape;
  for (const auto& item : split_list(text, option)) {
    const auto value = whole_integer(item);
    if (!value || *value <= 0) {
      throw UsageError(option, "expected positive integers like 1,28,28, got '" + text + "'");
    }
    shape.push_back(*value);
  }
  if (shape.size() != 3) throw UsageError(option, "expected C,H,W (three sizes), got '" + text + "'");
  return shape;
}

int64_t parse_count(const std::string& text, const std::string& option) {
  const auto value = whole_integer(text);
  if (!value || *value < 0) throw UsageError(option, "expected a count >= 0, got '" + text + "'");
  return *value;
}

uint64_t parse_seed(const std::string& text, const std::string& option) {
  const auto fail = [&] { return UsageError(option, "expected a whole number >= 0, got '" + text + "'"); };
  // stoull would take "-1" as 2^64 - 1, and " 7" or "+7" too: digits only.
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    throw fail();
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    throw fail();  // above 2^64 - 1
  }
}

std::vector<int64_t> parse_counts(const std::string& text, const std::string& option) {
  std::vector<int64_t> values;
  for (const auto& item : split_list(text, option)) values.push_back(parse_count(item, option));
  return values;
}

std::vector<double> parse_doubles(const std::string& text, const std::string& option) {
  std::vector<double> values;
  for (const auto& item : split_list(text, option)) {
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || !std::isfinite(value)) {
      throw UsageError(option, "expected numbers like 0.8,0.9, got '" + text + "'");
    }
    values.push_back(value);
  }
  return values;
}

std::string format_percent(double fraction) {
  const double percent = 100.0 * fraction;
  int decimals = 2;
  // Up to 8 decimals tells apart any fraction of a layer up to 10^10 weights.
  for (double scale = 100; decimals < 8; ++decimals, scale *= 10) {
    const double shown = std::round(percent * scale) / scale;
    if (!((shown == 0.0 && fraction > 0) || (shown == 100.0 && fraction < 1))) break;
  }
  return fmt::format("{:.{}f}", percent, decimals);
}

std::string format_shape(const std::vector<int64_t>& shape) {
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += 'x';
    out += std::to_string(shape[i]);
  }
  return out;
}

}  // namespace rdprune
