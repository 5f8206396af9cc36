// Error types shared by every layer of rdprune. Torch-free.
#pragma once

#include <stdexcept>
#include <string>

namespace rdprune {

// The tool was called wrongly: an unknown name, a value out of range, a missing flag.
// The CLI maps it to exit code 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad input data or a failure while working: a truncated file, a model that does not fit the
// data. The CLI maps it to exit code 1. Messages name the file or field and what was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace rdprune
