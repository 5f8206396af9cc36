#include <gtest/gtest.h>
#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/network.h"
#include "rdprune/zoo.h"

namespace rdprune {
namespace {

ModelMeta meta_for(const std::string& arch, std::vector<int64_t> shape, int64_t classes = 10) {
  ModelMeta meta;
  meta.arch = arch;
  meta.input_shape = std::move(shape);
  meta.num_classes = classes;
  return meta;
}

int64_t total_weights(const Network& network) {
  int64_t total = 0;
  for (const auto& layer : network.layers()) total += layer.weight.numel();
  return total;
}

class EveryArchitecture : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryArchitecture, MapsImagesToLogits) {
  torch::NoGradGuard no_grad;
  for (const auto& shape : {std::vector<int64_t>{1, 28, 28}, std::vector<int64_t>{3, 32, 32}}) {
    torch::manual_seed(0);
    auto network = create_network(meta_for(GetParam(), shape, 7));
    network->set_training(false);
    std::vector<int64_t> batch = {2};
    batch.insert(batch.end(), shape.begin(), shape.end());
    const auto out = network->forward(torch::randn(batch));
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 7}));
    EXPECT_FALSE(network->layers().empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, EveryArchitecture,
                         ::testing::Values("mlp", "lenet5", "resnet20", "resnet32", "resnet56", "vgg16",
                                           "vit", "resnet18", "resnet50"));

TEST(Zoo, ResNet20HasTheExpectedLayers) {
  auto network = create_network(meta_for("resnet20", {1, 28, 28}));
  const auto& layers = network->layers();
  ASSERT_EQ(layers.size(), 22u);  // 19 convs, 2 projection shortcuts, 1 linear
  EXPECT_EQ(total_weights(*network), 270608);
  EXPECT_EQ(layers.front().name, "conv1");
  EXPECT_EQ(layers[1].name, "layer1.0.conv1");
  EXPECT_EQ(layers[9].name, "layer2.0.downsample.0");
  EXPECT_EQ(layers.back().name, "fc");
  EXPECT_EQ(layers.back().type, "linear");
}

TEST(Zoo, Lenet300100AndResNet50Sizes) {
  EXPECT_EQ(total_weights(*create_network(meta_for("mlp", {1, 28, 28}))), 784 * 300 + 300 * 100 + 100 * 10);
  auto resnet50 = create_network(meta_for("resnet50", {3, 224, 224}, 1000));
  EXPECT_EQ(resnet50->layers().size(), 54u);
  // torchvision's ResNet-50 has 25,557,032 parameters, of which these are the prunable weights.
  EXPECT_EQ(total_weights(*resnet50), 25502912);
}

TEST(Zoo, StagesRunFromAnyPoint) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  auto model = make_zoo_model({"resnet20", 1, 28, 10, {}});
  model->eval();
  const auto x = torch::randn({3, 1, 28, 28});
  const auto full = model->forward(x);
  // Feeding stage j the output of stages [0, j) reproduces the forward pass exactly.
  for (size_t j = 0; j <= model->num_stages(); ++j) {
    const auto hidden = model->run_range(0, j, {x});
    const auto out = model->run_from(j, hidden);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(torch::equal(out[0], full)) << "stage " << j;
  }
  EXPECT_EQ(model->stage_prefixes().front().front(), "conv1");
  EXPECT_EQ(model->stage_prefixes().back().front(), "fc");
  EXPECT_EQ(model->num_stages(), 1u + 2u * 9u + 1u);  // stem, nine blocks in two halves, head
  // A block's second half hands on one tensor, its first half two.
  EXPECT_EQ(model->run_range(0, 2, {x}).size(), 2u);
  EXPECT_EQ(model->run_range(0, 3, {x}).size(), 1u);
}

TEST(Zoo, VitHasEveryProjectionAsALayerAndRunsFromEveryHalfBlock) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  auto network = create_network(meta_for("vit", {1, 28, 28}));
  const auto& layers = network->layers();
  // Patch embedding, four blocks of q, k, v, proj, fc1, fc2, and the head.
  ASSERT_EQ(layers.size(), 1u + 4u * 6u + 1u);
  EXPECT_EQ(layers[0].name, "patch_embed");
  EXPECT_EQ(layers[1].name, "blocks.0.attn.q");
  EXPECT_EQ(layers[4].name, "blocks.0.attn.proj");
  EXPECT_EQ(layers[6].name, "blocks.0.mlp.fc2");
  EXPECT_EQ(layers.back().name, "head");
  EXPECT_EQ(total_weights(*network), 64 * 49 + 4 * (4 * 64 * 64 + 2 * 64 * 128) + 10 * 64);
  EXPECT_EQ(network->num_stages(), 1u + 2u * 4u + 1u);
  EXPECT_EQ(network->stage_of(1), 1u);  // q of block 0: its attention half
  EXPECT_EQ(network->stage_of(5), 2u);  // fc1 of block 0: its MLP half
  network->set_training(false);
  const auto x = torch::randn({3, 1, 28, 28});
  const auto full = network->forward(x);
  for (size_t j = 0; j <= network->num_stages(); ++j) {
    const auto out = network->run_stages(j, network->num_stages(), network->run_stages(0, j, {x}));
    EXPECT_TRUE(torch::equal(out.at(0), full)) << "stage " << j;
  }
  // Each sample's logits depend on that sample alone (no batch-wide statistics).
  EXPECT_TRUE(torch::allclose(network->forward(x.narrow(0, 1, 1)), full.narrow(0, 1, 1), 1e-5, 1e-6));
}

TEST(Zoo, UnknownArchitectureIsAUsageError) {
  EXPECT_THROW(create_network(meta_for("resnet1000", {1, 28, 28})), UsageError);
  EXPECT_THROW(create_network(meta_for("lenet5", {1, 8, 8})), UsageError);
}

TEST(Zoo, SeedDecidesTheWeights) {
  torch::manual_seed(1);
  auto a = create_network(meta_for("lenet5", {1, 28, 28}));
  torch::manual_seed(1);
  auto b = create_network(meta_for("lenet5", {1, 28, 28}));
  torch::manual_seed(2);
  auto c = create_network(meta_for("lenet5", {1, 28, 28}));
  EXPECT_TRUE(torch::equal(a->layers()[0].weight, b->layers()[0].weight));
  EXPECT_FALSE(torch::equal(a->layers()[0].weight, c->layers()[0].weight));
}

}  // namespace
}  // namespace rdprune
