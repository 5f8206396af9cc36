#include <csignal>
#include <cstdlib>
#include <stdexcept>

#include <gtest/gtest.h>

#include "rdprune/child_probe.h"

namespace rdprune {
namespace {

TEST(ChildProbe, AReadingIsReported) {
  const ChildReading reading = read_in_child([] { return std::string(); });
  EXPECT_TRUE(reading.read);
  EXPECT_FALSE(reading.crashed);
}

TEST(ChildProbe, ARefusalCarriesItsReason) {
  const ChildReading refused = read_in_child([] { return std::string("bad header"); });
  EXPECT_FALSE(refused.read);
  EXPECT_FALSE(refused.crashed);
  EXPECT_EQ(refused.reason, "bad header");
  const ChildReading thrown =
      read_in_child([]() -> std::string { throw std::runtime_error("the reader's own answer"); });
  EXPECT_FALSE(thrown.read);
  EXPECT_FALSE(thrown.crashed);
  EXPECT_EQ(thrown.reason, "the reader's own answer");
}

TEST(ChildProbe, ACrashIsNamed) {
  const auto crash = [](const std::function<std::string()>& attempt) {
    const ChildReading reading = read_in_child(attempt);
    EXPECT_FALSE(reading.read);
    EXPECT_TRUE(reading.crashed);
    return reading.reason;
  };
  EXPECT_EQ(crash([]() -> std::string {
              std::raise(SIGKILL);
              return "";
            }),
            "signal 9, Killed");
  EXPECT_EQ(crash([]() -> std::string { std::abort(); }), "signal 6, Aborted");
  EXPECT_EQ(crash([]() -> std::string { std::_Exit(1); }), "exit status 1");
}

TEST(ChildProbe, TheChildChangesNothingHere) {
  int value = 1;
  EXPECT_TRUE(read_in_child([&] {
                value = 2;
                return std::string();
              }).read);
  EXPECT_EQ(value, 1);
}

}  // namespace
}  // namespace rdprune
