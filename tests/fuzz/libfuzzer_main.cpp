// libFuzzer's entry for the target named by RDPRUNE_FUZZ_TARGET (one executable per target).
#include <cstdio>
#include <cstdlib>

#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const rdprune::fuzz::Target* target = rdprune::fuzz::find_target(RDPRUNE_FUZZ_TARGET);
  if (target == nullptr) {
    std::fprintf(stderr, "no fuzz target %s\n", RDPRUNE_FUZZ_TARGET);
    std::abort();
  }
  rdprune::fuzz::run_input(*target, data, size);
  return 0;
}
