// The readers' targets alone: fuzz_replay_readers, which links the core and data layers only (the
// sanitizer stage, scripts/sanitize.sh).
#include "harness.h"

namespace rdprune::fuzz {

const std::vector<Target>& targets() {
  static const std::vector<Target> readers = reader_targets();
  return readers;
}

}  // namespace rdprune::fuzz
