// The libraries' layers, made a build error to break (docs/design.md, "Architecture"). Each
// library sees a generated rdprune_level.h that sets RDPRUNE_LEVEL to its level: core 0, data and dist 1,
// nn 2, train 3, alloc 4, schedule 5. A header of a higher layer states its level with RDPRUNE_LAYER, and
// including it from a lower library fails to compile. The CLI, the tests and users see every layer.
#pragma once

#if __has_include(<rdprune_level.h>)
#include <rdprune_level.h>
#else
#define RDPRUNE_LEVEL 100
#endif

#define RDPRUNE_LAYER(level, name)                                    \
  static_assert(RDPRUNE_LEVEL >= (level), "a library below the " name \
                                          " layer includes "          \
                                          "one of its headers: dependencies flow one way")
