// LibTorch's reason for an exception it threw, made one line of an rdprune message.
#pragma once

#include "rdprune/layering.h"
RDPRUNE_LAYER(1, "data");

#include <exception>
#include <string>

namespace rdprune {

// The first line of the message that is not blank, without the backtrace a c10::Error appends, at
// most 200 characters; "no reason given" when there is none.
std::string torch_reason(const std::exception& e);

}  // namespace rdprune
