// Where the library reports what it is doing. The library writes nothing to the terminal itself:
// whoever calls it passes a Sink (the CLI's writes to stderr), and a null Sink* means silence.
// Torch-free.
#pragma once

#include <ostream>
#include <string>

namespace rdprune {

class Sink {
 public:
  virtual ~Sink() = default;
  // One line of progress, without its newline ("round 1/2: rd target 0.6838, ...").
  virtual void note(const std::string& line) = 0;
  // Where progress bars draw (Progress); they redraw in place when `terminal()`.
  virtual std::ostream& stream() = 0;
  virtual bool terminal() const = 0;
};

// A Sink writing to a stream; `terminal` decides whether bars redraw in place.
class StreamSink : public Sink {
 public:
  StreamSink(std::ostream& out, bool terminal) : out_(out), terminal_(terminal) {}
  void note(const std::string& line) override { out_ << line << '\n' << std::flush; }
  std::ostream& stream() override { return out_; }
  bool terminal() const override { return terminal_; }

 private:
  std::ostream& out_;
  bool terminal_;
};

// Writes `line` to `sink` unless it is null.
inline void note(Sink* sink, const std::string& line) {
  if (sink != nullptr) sink->note(line);
}

}  // namespace rdprune
