// Data-parallel training against one process: each rank is a thread here, with a process group of
// its own meeting the others over loopback, exactly as separate processes would.
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "fresh_network.h"
#include "rdprune/error.h"
#include "rdprune/network.h"
#include "rdprune/process_group.h"
#include "rdprune/train.h"

namespace rdprune {
namespace {
using testing::TempDir;

// `count` toy training images written to `dir`.
Dataset training_images(const TempDir& dir, int64_t count) {
  testing::write_idx_dataset(dir.path(), count, 16, false);
  DatasetOptions options;
  options.data_dir = dir.path();
  return load_dataset(options).train;
}

// Trains the networks with `options`, one network per rank of
// `networks.size()` processes (one: alone).
void train_together(std::vector<std::unique_ptr<Network>>& networks, const Dataset& data,
                    const TrainOptions& options) {
  const int size = static_cast<int>(networks.size());
  if (size == 1) {
    train(*networks[0], data, options);
    return;
  }
  const int port = testing::free_port();
  std::vector<std::string> errors(networks.size());
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.emplace_back([&, rank] {
      try {
        ProcessPlace place;
        place.rank = rank;
        place.world_size = size;
        place.master_addr = "127.0.0.1";
        place.master_port = port;
        ProcessGroup group(place, 60);
        TrainOptions mine = options;
        mine.group = &group;
        train(*networks[rank], data, mine);
      } catch (const std::exception& e) {
        errors[rank] = e.what();
      }
    });
  }
  for (std::thread& rank : ranks) rank.join();
  for (int rank = 0; rank < size; ++rank) ASSERT_EQ(errors[rank], "") << "rank " << rank;
}

double largest_difference(Network& a, Network& b) {
  double largest = 0;
  const auto pa = a.parameters();
  const auto pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    largest = std::max(largest, (pa[i] - pb[i]).abs().max().item<double>());
  const auto ba = a.buffers();
  const auto bb = b.buffers();
  for (size_t i = 0; i < ba.size(); ++i)
    largest =
        std::max(largest, (ba[i].to(torch::kFloat64) - bb[i].to(torch::kFloat64)).abs().max().item<double>());
  return largest;
}

TrainOptions twenty_steps() {
  TrainOptions options;
  options.steps = 20;
  options.batch_size = 48;  // shards of 24 and 16: equal and unequal parts
  options.lr = 0.05;
  options.seed = 3;
  return options;
}

TEST(DataParallel, TwentyStepsOfAnMlpEqualOneProcessWithTheSameGlobalBatch) {
  TempDir dir;
  const Dataset data = training_images(dir, 256);
  const TrainOptions options = twenty_steps();
  std::vector<std::unique_ptr<Network>> alone;
  alone.push_back(testing::fresh_network("mlp", 7));
  // Masks held: half of the first layer pruned in every process.
  const auto prune_half = [](Network& network) {
    const torch::Tensor& weight = network.layers()[0].weight;
    network.set_mask(0,
                     torch::rand(weight.sizes(), torch::Generator(at::detail::createCPUGenerator(5))) < 0.5);
  };
  prune_half(*alone[0]);
  ASSERT_NO_FATAL_FAILURE(train_together(alone, data, options));
  const double moved = largest_difference(*alone[0], *testing::fresh_network("mlp", 7));
  ASSERT_GT(moved, 1e-3);  // the steps did train
  for (const int size : {2, 3}) {
    std::vector<std::unique_ptr<Network>> ranks;
    for (int rank = 0; rank < size; ++rank) {
      ranks.push_back(testing::fresh_network("mlp", 7));
      prune_half(*ranks.back());
    }
    ASSERT_NO_FATAL_FAILURE(train_together(ranks, data, options));
    for (int rank = 0; rank < size; ++rank) {
      EXPECT_LT(largest_difference(*ranks[rank], *alone[0]), 1e-5) << size << " processes, rank " << rank;
      // Every rank holds the same model, bit for bit.
      EXPECT_EQ(largest_difference(*ranks[rank], *ranks[0]), 0.0) << size << " processes, rank " << rank;
      const torch::Tensor pruned = ranks[rank]->layers()[0].weight.masked_select(~ranks[rank]->masks()[0]);
      EXPECT_EQ(pruned.abs().max().item<double>(), 0.0);
    }
  }
}

TEST(DataParallel, BatchNormStatisticsAreTheMeanOverProcessesOrRankZeros) {
  TempDir dir;
  const Dataset data = training_images(dir, 64);
  TrainOptions options = twenty_steps();
  options.steps = 1;
  options.batch_size = 32;
  std::vector<std::unique_ptr<Network>> alone;
  alone.push_back(testing::fresh_network("resnet20", 7));
  ASSERT_NO_FATAL_FAILURE(train_together(alone, data, options));
  // The first batch norm sees the same images in every process; its running mean moves by the mean
  // over the batch, which the mean over two equal halves reproduces (rank 0's half does not).
  const auto first_mean = [](Network& network) { return network.buffers().at(0); };
  ASSERT_EQ(first_mean(*alone[0]).numel(), 16);
  for (const std::string bn_stats : {"mean", "rank0"}) {
    options.bn_stats = bn_stats;
    std::vector<std::unique_ptr<Network>> ranks;
    for (int rank = 0; rank < 2; ++rank) ranks.push_back(testing::fresh_network("resnet20", 7));
    ASSERT_NO_FATAL_FAILURE(train_together(ranks, data, options));
    EXPECT_EQ(largest_difference(*ranks[0], *ranks[1]), 0.0) << bn_stats;  // one model
    const double off = (first_mean(*ranks[0]) - first_mean(*alone[0])).abs().max().item<double>();
    if (bn_stats == "mean") {
      EXPECT_LT(off, 1e-6);
    } else {
      EXPECT_GT(off, 1e-4);
    }
  }
  options.bn_stats = "median";
  EXPECT_THROW(validate(options), UsageError);
}

}  // namespace
}  // namespace rdprune
