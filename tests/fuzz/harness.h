// What the fuzz targets share: a scratch directory for readers that take a path, and the helpers
// that put an input there. Internal to tests/fuzz.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "rdprune/error.h"
#include "targets.h"

namespace rdprune::fuzz {

// This process's own directory for inputs.
const std::filesystem::path& scratch();
// Writes `size` bytes to `path` (creating its directory); returns the path.
std::string put(const std::filesystem::path& path, const uint8_t* data, size_t size);
void put_text(const std::filesystem::path& path, const std::string& text);
std::string text_of(const uint8_t* data, size_t size);

// Runs both readings; refused (the second's error) only when neither takes the input.
template <typename First, typename Second>
void either(First first, Second second) {
  bool taken = true;
  try {
    first();
  } catch (const Error&) {
    taken = false;
  }
  try {
    second();
  } catch (const Error&) {
    if (!taken) throw;
  }
}

// The targets of the readers of outside data (core and data layers: readers.cpp) and of the run
// records and models (the whole torch side: records.cpp). targets() is one of them or both,
// depending on the executable (all_targets.cpp, reader_targets_only.cpp).
std::vector<Target> reader_targets();
std::vector<Target> record_targets();

}  // namespace rdprune::fuzz
