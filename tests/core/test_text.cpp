#include "rdprune/text.h"

#include <gtest/gtest.h>

#include "rdprune/error.h"

namespace rdprune {
namespace {

TEST(Text, ParsesShapes) {
  EXPECT_EQ(parse_shape("1,28,28", "--input-shape"), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_THROW(parse_shape("1,0,28", "--input-shape"), UsageError);
  EXPECT_THROW(parse_shape("1,x,28", "--input-shape"), UsageError);
  EXPECT_THROW(parse_shape("1,,28", "--input-shape"), UsageError);
  EXPECT_THROW(parse_shape("", "--input-shape"), UsageError);
  EXPECT_THROW(parse_shape("-3", "--input-shape"), UsageError);
  EXPECT_THROW(parse_shape("1,28", "--input-shape"), UsageError);  // C,H,W: three sizes
  EXPECT_THROW(parse_shape("1,28,28,1", "--input-shape"), UsageError);
}

TEST(Text, ParsesCounts) {
  EXPECT_EQ(parse_count("25", "--recovery-steps"), 25);
  EXPECT_EQ(parse_count("0", "--recovery-steps"), 0);
  EXPECT_THROW(parse_count("-1", "--recovery-steps"), UsageError);
  EXPECT_THROW(parse_count("2.5", "--recovery-steps"), UsageError);
  EXPECT_THROW(parse_count("", "--recovery-steps"), UsageError);
  EXPECT_THROW(parse_count("many", "--recovery-steps"), UsageError);
}

TEST(Text, ParsesSeeds) {
  EXPECT_EQ(parse_seed("0", "--seed"), 0u);
  EXPECT_EQ(parse_seed("18446744073709551615", "--seed"), 18446744073709551615ull);
  for (const char* bad : {"-1", "+1", " 1", "1.5", "", "x", "18446744073709551616", "184467440737095516150"})
    EXPECT_THROW(parse_seed(bad, "--seed"), UsageError) << bad;
}

TEST(Text, ParsesCountLists) {
  EXPECT_EQ(parse_counts("0,1,2", "--seed"), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(parse_counts("7", "--seed"), (std::vector<int64_t>{7}));
  EXPECT_THROW(parse_counts("0,-1", "--seed"), UsageError);
  EXPECT_THROW(parse_counts("0,,1", "--seed"), UsageError);
  EXPECT_THROW(parse_counts("1,x", "--rounds"), UsageError);
}

TEST(Text, ParsesDoubles) {
  EXPECT_EQ(parse_doubles("0.5,1e-3", "--mean"), (std::vector<double>{0.5, 1e-3}));
  EXPECT_THROW(parse_doubles("nan", "--mean"), UsageError);
  EXPECT_THROW(parse_doubles("0.5abc", "--mean"), UsageError);
  EXPECT_THROW(parse_doubles("inf", "--mean"), UsageError);
}

TEST(Text, ErrorNamesTheOption) {
  try {
    parse_shape("a", "input_shape");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_EQ(e.option(), "input_shape");
    EXPECT_EQ(std::string(e.what()).rfind("input_shape: ", 0), 0u) << e.what();
    EXPECT_NE(e.reason().find("got 'a'"), std::string::npos) << e.reason();
  }
}

TEST(Text, FormatsShapes) {
  EXPECT_EQ(format_shape({3, 32, 32}), "3x32x32");
}

TEST(Text, PercentagesShowNeitherNoneNorAllForWhatIsNeither) {
  EXPECT_EQ(format_percent(0.875), "87.50");
  EXPECT_EQ(format_percent(0.0), "0.00");
  EXPECT_EQ(format_percent(1.0), "100.00");
  // One weight kept of 48000: 99.9979..., which two decimals would round to 100.00.
  EXPECT_EQ(format_percent(1.0 - 1.0 / 48000), "99.998");
  // One weight pruned of 270608.
  EXPECT_EQ(format_percent(1.0 / 270608), "0.0004");
  EXPECT_EQ(format_percent(0.99994), "99.99");
  EXPECT_EQ(format_percent(0.99996), "99.996");
}

}  // namespace
}  // namespace rdprune
