// Parsing of command-line values with errors that name the option they are for. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "rdprune/error.h"

namespace rdprune {

// "1,28,28" -> {1, 28, 28}: C,H,W, three positive integers. Throws UsageError naming `option`.
std::vector<int64_t> parse_shape(const std::string& text, const std::string& option);

// "25" -> 25. Must be an integer >= 0. Throws UsageError naming `option`.
int64_t parse_count(const std::string& text, const std::string& option);

// "7" -> 7: a seed, any whole number in [0, 2^64). Throws UsageError naming `option`.
uint64_t parse_seed(const std::string& text, const std::string& option);

// "0,1,2" -> {0, 1, 2}. Every entry must be an integer >= 0. Throws UsageError naming `option`.
std::vector<int64_t> parse_counts(const std::string& text, const std::string& option);

// "0.8,0.9" -> {0.8, 0.9}. Every entry must be a finite number. Throws UsageError naming `option`.
std::vector<double> parse_doubles(const std::string& text, const std::string& option);

// "a,b,c" -> {"a", "b", "c"}; empty entries are an error (a UsageError naming `option`).
std::vector<std::string> split_list(const std::string& text, const std::string& option);

// Rejects a list that names a value twice (a repeated entry would do the same work twice) with a
// UsageError naming `option`.
// Throws a UsageError naming `option` unless `value` is one of `known` (`what`: "method",
// "preset"), listing them.
void require_one_of(const std::string& option, const std::string& value,
                    const std::vector<std::string>& known, const std::string& what);

template <typename T>
void require_distinct(const std::vector<T>& values, const std::string& option) {
  for (size_t i = 0; i < values.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (values[i] == values[j]) throw UsageError(option, fmt::format("{} is listed twice", values[i]));
    }
  }
}

// A fraction as a percentage with two decimals ("87.50"), or as many more as it takes not to show
// 0.00 or 100.00 for a fraction that is neither: a layer that keeps 1 of 48000 weights reads
// "99.998", not "100.00". No "%" sign.
std::string format_percent(double fraction);

// "3x28x28"-style rendering of a shape: "1x28x28".
std::string format_shape(const std::vector<int64_t>& shape);

}  // namespace rdprune
