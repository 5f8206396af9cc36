// Fuzz targets: every reader of outside data, fed arbitrary bytes. A target passes an input when
// the reader returns or throws rdprune's Error or UsageError with a one-line message; anything
// else (another exception, a crash, a sanitizer report) is a finding. scripts/fuzz.sh runs them
// under libFuzzer; fuzz_replay runs saved inputs (seeds and committed regressions) in any build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rdprune::fuzz {

struct Target {
  std::string name;
  void (*run)(const uint8_t* data, size_t size);
  // Writes valid small inputs into `dir` (which exists), the seeds of the target's corpus.
  void (*seed)(const std::string& dir);
};

const std::vector<Target>& targets();
// The target called `name`, or null.
const Target* find_target(const std::string& name);
// Runs one input through `target`: "" when the reader took it, else its one-line error. Aborts
// with a message on a finding.
std::string run_input(const Target& target, const uint8_t* data, size_t size);

}  // namespace rdprune::fuzz
