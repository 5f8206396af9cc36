// Latency tables for channel plans: measured at the grid's widths, valid, cached (docs/channels.md).
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "fresh_network.h"
#include "rdprune/channels.h"
#include "rdprune/error.h"
#include "rdprune/latency.h"

namespace rdprune {
namespace {

ChannelCostModel cost_model_of(Network& network) {
  return channel_cost_model(channel_groups(network), layer_census(network, network.meta().input_shape));
}

TEST(LatencyTables, CoverTheGridOfEveryLayerAndComeBackFromTheCache) {
  auto network = testing::fresh_network("lenet5");
  testing::TempDir cache;
  LatencyOptions options;
  options.batch_size = 8;
  options.grid = 3;
  options.repeats = 1;
  options.cache_dir = cache.path();
  ChannelCostModel model = cost_model_of(*network);
  measure_latency(*network, model, options);
  ASSERT_TRUE(model.has_latency());
  EXPECT_GE(model.latency_rest, 0.0);
  EXPECT_NE(model.latency_setting.find("batch 8"), std::string::npos);
  // conv1 produces group conv1 (6 channels: widths 1, 4, 6) from the 1-channel image; conv2 reads
  // it and produces conv2 (16: 1, 9, 16); fc1 reads conv2 through the flatten.
  ASSERT_EQ(model.layers[0].name, "conv1");
  EXPECT_EQ(model.layers[0].latency.out_widths, (std::vector<int64_t>{1, 4, 6}));
  EXPECT_EQ(model.layers[0].latency.in_widths, (std::vector<int64_t>{1}));
  EXPECT_EQ(model.layers[1].latency.out_widths, (std::vector<int64_t>{1, 9, 16}));
  EXPECT_EQ(model.layers[1].latency.in_widths, (std::vector<int64_t>{1, 4, 6}));
  EXPECT_EQ(model.layers[2].latency.in_widths, (std::vector<int64_t>{1, 9, 16}));
  for (const auto& layer : model.layers) {
    const auto& table = layer.latency;
    ASSERT_EQ(table.seconds.size(), table.out_widths.size() * table.in_widths.size()) << layer.name;
    EXPECT_GT(table.seconds.front(), 0.0) << layer.name;
    for (size_t i = 1; i < table.seconds.size(); ++i)  // non-decreasing along the rows, as stored
      if (i % table.in_widths.size() != 0) {
        EXPECT_GE(table.seconds[i], table.seconds[i - 1]) << layer.name;
      }
  }
  // A second measurement of the same setting reads the file: exactly the same tables.
  ASSERT_EQ(
      std::distance(std::filesystem::directory_iterator(cache.path()), std::filesystem::directory_iterator()),
      1);
  ChannelCostModel again = cost_model_of(*network);
  measure_latency(*network, again, options);
  for (size_t i = 0; i < model.layers.size(); ++i)
    EXPECT_EQ(again.layers[i].latency.seconds, model.layers[i].latency.seconds);
  EXPECT_EQ(again.latency_rest, model.latency_rest);
}

TEST(LatencyTables, RefuseAnotherModelsCostsAndBadOptions) {
  auto lenet = testing::fresh_network("lenet5");
  auto resnet = testing::fresh_network("resnet20");
  LatencyOptions options;
  options.grid = 2;
  options.repeats = 1;
  ChannelCostModel model = cost_model_of(*resnet);
  EXPECT_THROW(measure_latency(*lenet, model, options), Error);
  options.grid = 1;
  EXPECT_THROW(measure_latency(*resnet, model, options), UsageError);
  options.grid = 2;
  options.batch_size = 0;
  EXPECT_THROW(measure_latency(*resnet, model, options), UsageError);
}

}  // namespace
}  // namespace rdprune
