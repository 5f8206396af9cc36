// Error types shared by every layer of rdprune. Torch-free.
#pragma once

#include <stdexcept>
#include <string>

namespace rdprune {

// The tool was called wrongly: an unknown name, a value out of range, a missing value.
// The CLI maps it to exit code 2. The library names the option by its field in the options
// structs ("judge_size", "finetune.lr"); the CLI names it by its flag (cli::flag_of).
class UsageError : public std::runtime_error {
 public:
  // A message that names nothing, or names it already.
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
  // What is wrong with `option`: what() is "option: message".
  UsageError(const std::string& option, const std::string& message)
      : std::runtime_error(option + ": " + message), option_(option), reason_(message) {}
  // The option at fault, or empty.
  const std::string& option() const { return option_; }
  // The message without the option's name in front.
  const std::string& reason() const { return reason_; }

 private:
  std::string option_;
  std::string reason_;
};

// Bad input data or a failure while working: a truncated file, a model that does not fit the
// data. The CLI maps it to exit code 1. Messages name the file or field and what was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace rdprune
