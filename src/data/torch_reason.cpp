#include "rdprune/torch_reason.h"

#include <algorithm>

#include <c10/util/Exception.h>

namespace rdprune {

std::string torch_reason(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = torch_error != nullptr ? torch_error->what_without_backtrace() : e.what();
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    const std::string line = text.substr(begin, end - begin);
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line.substr(0, 200);
    begin = end + 1;
  }
  return "no reason given";
}

}  // namespace rdprune
