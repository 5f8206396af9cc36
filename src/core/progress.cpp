#include "rdprune/progress.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace rdprune {

Progress::Progress(std::string label, int64_t total, Sink* sink)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 0)),
      sink_(sink),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_) finish(status_);
}

void Progress::advance(int64_t units, const std::string& status) {
  done_ += units;
  if (!status.empty()) status_ = status;
  if (sink_ == nullptr) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  // A terminal redraws ten times a second; a log gets a line every 5 s.
  if (since_draw >= (sink_->terminal() ? 0.1 : 5.0)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  if (sink_ != nullptr) draw(true);
}

void Progress::draw(bool final_line) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  const double fraction = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / total_) : 1.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : 0.0;
  std::string timing = final_line ? fmt::format("{} total", format_duration(elapsed))
                                  : fmt::format("ETA {}", format_duration(std::max(0.0, eta)));
  std::ostream& out = sink_->stream();
  if (sink_->terminal()) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(std::lround(fraction * kWidth));
    out << fmt::format("\r{} [{}{}] {}/{} {:.1f}/s {} {}\x1b[K", label_, std::string(filled, '#'),
                       std::string(kWidth - filled, '.'), done_, total_, rate, timing, status_);
    if (final_line) out << '\n';
  } else {
    out << fmt::format("{}: {}/{} ({:.0f}%) {:.1f}/s {} {}\n", label_, done_, total_, 100.0 * fraction, rate,
                       timing, status_);
  }
  out.flush();
}

std::string format_duration(double seconds) {
  if (seconds >= 3600) {
    const auto s = static_cast<int64_t>(seconds);
    return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  }
  if (seconds >= 60) {
    const auto s = static_cast<int64_t>(seconds);
    return fmt::format("{}m{:02d}s", s / 60, s % 60);
  }
  return fmt::format("{:.1f}s", seconds);
}

}  // namespace rdprune
