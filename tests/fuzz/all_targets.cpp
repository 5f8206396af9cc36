// Every target: fuzz_replay and the libFuzzer executables.
#include "harness.h"

namespace rdprune::fuzz {

const std::vector<Target>& targets() {
  static const std::vector<Target> all = [] {
    std::vector<Target> list = reader_targets();
    for (auto& target : record_targets()) list.push_back(std::move(target));
    return list;
  }();
  return all;
}

}  // namespace rdprune::fuzz
