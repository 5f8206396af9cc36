#include <gtest/gtest.h>
#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/process_group.h"

namespace rdprune {
namespace {

TEST(Shards, CoverEveryItemOnceInRankOrderAndDifferByAtMostOne) {
  for (const int64_t count : {0, 1, 5, 64, 101}) {
    for (const int size : {1, 2, 3, 7}) {
      int64_t next = 0;
      int64_t smallest = count;
      int64_t largest = 0;
      for (int rank = 0; rank < size; ++rank) {
        const auto [begin, end] = shard_of(count, rank, size);
        EXPECT_EQ(begin, next) << count << " " << size << " " << rank;
        next = end;
        smallest = std::min(smallest, end - begin);
        largest = std::max(largest, end - begin);
      }
      EXPECT_EQ(next, count);
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

TEST(ProcessPlace, ReadsTheLaunchersVariables) {
  EXPECT_EQ(place_from({}).world_size, 1);
  const ProcessPlace place = place_from({{"WORLD_SIZE", "4"},
                                         {"RANK", "3"},
                                         {"LOCAL_RANK", "1"},
                                         {"MASTER_ADDR", "node0"},
                                         {"MASTER_PORT", "29501"},
                                         {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                         {"TORCHELASTIC_RESTART_COUNT", "2"}});
  EXPECT_EQ(place.rank, 3);
  EXPECT_EQ(place.world_size, 4);
  EXPECT_EQ(place.local_rank, 1);
  EXPECT_EQ(place.master_addr, "node0");
  EXPECT_EQ(place.master_port, 29501);
  EXPECT_TRUE(place.agent_store);
  EXPECT_EQ(place.restart_count, "2");
  // One process needs no rendezvous.
  EXPECT_EQ(place_from({{"WORLD_SIZE", "1"}, {"RANK", "0"}}).master_addr, "");
  EXPECT_THROW(place_from({{"WORLD_SIZE", "2"}}), UsageError);
  EXPECT_THROW(place_from({{"WORLD_SIZE", "2"}, {"RANK", "-1"}}), UsageError);
  EXPECT_THROW(
      place_from({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "70000"}}),
      UsageError);
}

TEST(ProcessGroup, OneProcessCopies) {
  ProcessGroup group(ProcessPlace{}, 1.0);
  EXPECT_TRUE(group.is_root());
  const torch::Tensor values = torch::tensor({1.5, 2.5}, torch::kFloat64);
  torch::Tensor total = group.sum(values);
  EXPECT_TRUE(total.equal(values));
  total.fill_(0);
  EXPECT_EQ(values[0].item<double>(), 1.5);
  const std::vector<torch::Tensor> parts = group.gather(torch::tensor({1, 2, 3}, torch::kUInt8));
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_TRUE(parts[0].equal(torch::tensor({1, 2, 3}, torch::kUInt8)));
  EXPECT_EQ(group.exchange("text"), std::vector<std::string>{"text"});
}

}  // namespace
}  // namespace rdprune
