#include "rdprune/hits.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "rdprune/error.h"

namespace rdprune {
namespace {
constexpr const char* kHitsSchema = "rdprune.hits/1";
}  // namespace

std::string hits_to_text(const std::vector<uint8_t>& hits) {
  std::string text = fmt::format("{} {}\n", kHitsSchema, hits.size());
  text.reserve(text.size() + hits.size() + 1);
  for (uint8_t hit : hits) text += hit != 0 ? '1' : '0';
  text += '\n';
  return text;
}

std::vector<uint8_t> hits_from_text(const std::string& text, const std::string& where) {
  const size_t header_end = text.find('\n');
  const std::string header = text.substr(0, header_end);
  const std::string prefix = std::string(kHitsSchema) + " ";
  if (header_end == std::string::npos || header.rfind(prefix, 0) != 0)
    throw Error(where + ": not a " + kHitsSchema + " file");
  size_t count = 0;
  try {
    size_t used = 0;
    count = std::stoul(header.substr(prefix.size()), &used);
    if (used != header.size() - prefix.size()) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    throw Error(where + ": expected an image count after " + kHitsSchema + ", got '" + header + "'");
  }
  std::string line = text.substr(header_end + 1);
  if (!line.empty() && line.back() == '\n') line.pop_back();
  if (line.size() != count)
    throw Error(fmt::format("{}: expected {} outcomes, found {} (truncated?)", where, count, line.size()));
  std::vector<uint8_t> hits;
  hits.reserve(count);
  for (char c : line) {
    if (c != '0' && c != '1') throw Error(where + ": outcomes must be '0' or '1'");
    hits.push_back(c == '1' ? 1 : 0);
  }
  return hits;
}

PairedDifference paired_difference_over_runs(const std::vector<std::vector<uint8_t>>& mine,
                                             const std::vector<std::vector<uint8_t>>& theirs) {
  if (mine.empty() || mine.size() != theirs.size())
    throw Error(fmt::format("paired difference over runs: {} and {} runs", mine.size(), theirs.size()));
  const size_t n = mine.front().size();
  for (size_t s = 0; s < mine.size(); ++s) {
    if (n == 0 || mine[s].size() != n || theirs[s].size() != n)
      throw Error(fmt::format("paired difference: outcomes on {} and {} images, expected {}", mine[s].size(),
                              theirs[s].size(), n));
  }
  const auto k = static_cast<double>(mine.size());
  double sum = 0;          // of each image's difference averaged over the pairs
  double sum_squares = 0;  // of its square
  for (size_t i = 0; i < n; ++i) {
    int64_t net = 0;  // pairs in which only mine is right, minus those in which only theirs is
    for (size_t s = 0; s < mine.size(); ++s) net += (mine[s][i] != 0 ? 1 : 0) - (theirs[s][i] != 0 ? 1 : 0);
    const double mean = static_cast<double>(net) / k;
    sum += mean;
    sum_squares += mean * mean;
  }
  const auto images = static_cast<double>(n);
  PairedDifference out;
  out.difference = sum / images;
  out.standard_error =
      std::sqrt(std::max(0.0, sum_squares / images - out.difference * out.difference) / images);
  return out;
}

PairedDifference paired_difference(const std::vector<uint8_t>& mine, const std::vector<uint8_t>& theirs) {
  return paired_difference_over_runs(std::vector<std::vector<uint8_t>>{mine},
                                     std::vector<std::vector<uint8_t>>{theirs});
}

}  // namespace rdprune
