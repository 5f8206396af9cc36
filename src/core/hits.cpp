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

PairedDifference paired_difference(const std::vector<uint8_t>& mine, const std::vector<uint8_t>& theirs) {
  if (mine.empty() || mine.size() != theirs.size())
    throw Error(fmt::format("paired difference: outcomes on {} and {} images", mine.size(), theirs.size()));
  int64_t only_mine = 0;    // b
  int64_t only_theirs = 0;  // c
  for (size_t i = 0; i < mine.size(); ++i) {
    if (mine[i] != 0 && theirs[i] == 0) ++only_mine;
    if (mine[i] == 0 && theirs[i] != 0) ++only_theirs;
  }
  const auto n = static_cast<double>(mine.size());
  PairedDifference out;
  out.difference = static_cast<double>(only_mine - only_theirs) / n;
  const double discordant = static_cast<double>(only_mine + only_theirs) / n;
  out.standard_error = std::sqrt(std::max(0.0, discordant - out.difference * out.difference) / n);
  return out;
}

}  // namespace rdprune
