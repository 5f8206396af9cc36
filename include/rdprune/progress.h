// Progress bars through a Sink. On a terminal: one bar redrawn in place with rate and ETA.
// Otherwise: a plain line at most every few seconds (and at the end), so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "rdprune/sink.h"

namespace rdprune {

class Progress {
 public:
  // `total` units of work (steps, batches, levels). A null `sink` makes every call a no-op.
  Progress(std::string label, int64_t total, Sink* sink);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Marks `units` more units done; `status` (e.g. "loss 0.41") is shown beside the bar.
  void advance(int64_t units = 1, const std::string& status = "");
  // Prints the final line; called by the destructor if not called before.
  void finish(const std::string& status = "");

 private:
  void draw(bool final_line);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  std::string status_;
  Sink* sink_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// Formats seconds as "1h02m", "3m05s" or "12.3s".
std::string format_duration(double seconds);

}  // namespace rdprune
