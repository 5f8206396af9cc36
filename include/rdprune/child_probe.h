// A reading tried first in a child process, so that a crash inside a library rdprune does not
// control (LibTorch's unpickler and TorchScript importer on damaged archives) ends in one line of
// rdprune's own instead of taking the process down. Torch-free.
#pragma once

#include <functional>
#include <string>

namespace rdprune {

// How a reading tried in a child process ended.
struct ChildReading {
  bool read = false;     // the attempt read the input: reading it here is safe
  bool crashed = false;  // the child ended without an answer
  // When not read: the attempt's own reason, or how the child ended ("signal 6, Aborted",
  // "exit status 1": a sanitizer's report).
  std::string reason;
};

// Runs `attempt` in a forked child and waits for it. The attempt returns "" when it read the input,
// else its reason (an exception escaping it counts as its what()). Only a reading the child
// finished is worth repeating here: an input the reader refuses is refused from the child's answer,
// without reading it in this process, as some damaged inputs crash a reader only now and then. The
// child ends with _exit (none of this process's destructors or exit handlers run in it), takes the
// default action on the signals that stop this one, and what it prints goes nowhere. Throws Error
// when no child can be started.
ChildReading read_in_child(const std::function<std::string()>& attempt);

}  // namespace rdprune
