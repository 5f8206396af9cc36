// Channel groups, channel masks, the physically smaller model and channel curves (docs/channels.md).
#include <filesystem>
#include <map>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fresh_network.h"
#include "rdprune/channels.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

std::unique_ptr<Network> network_of(const std::string& arch, std::vector<int64_t> shape) {
  torch::manual_seed(3);
  ModelMeta meta;
  meta.arch = arch;
  meta.input_shape = std::move(shape);
  meta.num_classes = 10;
  return create_network(meta);
}

// Batch-norm statistics and shifts far from their initial values, so that a removed channel's
// shift would show in the outputs if anything still read it.
void disturb_buffers(Network& network) {
  torch::NoGradGuard no_grad;
  for (auto& buffer : network.buffers())
    if (buffer.is_floating_point()) buffer.copy_(torch::rand_like(buffer) + 0.5);
  for (auto& parameter : network.parameters())
    if (parameter.dim() == 1) parameter.copy_(torch::randn_like(parameter));
}

// Every group keeps a random number of its channels (at least one), by rank.
void mask_randomly(Network& network) {
  for (const auto& group : channel_groups(network)) {
    const int64_t kept = 1 + torch::randint(group.channels, {1}).item<int64_t>();
    mask_channels(network, group, keep_last(channel_order(network, group), kept));
  }
}

torch::Tensor outputs(Network& network, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  network.set_training(false);
  return network.forward(x);
}

class RemovedChannels : public ::testing::TestWithParam<std::pair<std::string, std::vector<int64_t>>> {};

TEST_P(RemovedChannels, GiveTheMaskedNetworksOutputsWithFewerWeights) {
  const auto& [arch, shape] = GetParam();
  auto network = network_of(arch, shape);
  disturb_buffers(*network);
  mask_randomly(*network);
  const torch::Tensor x = torch::randn({3, shape[0], shape[1], shape[2]});
  const torch::Tensor masked = outputs(*network, x);

  auto smaller = remove_pruned_channels(*network);
  EXPECT_TRUE(torch::allclose(outputs(*smaller, x), masked, 1e-4, 1e-5))
      << (outputs(*smaller, x) - masked).abs().max().item<double>();
  int64_t before = 0;
  int64_t after = 0;
  for (const auto& p : network->parameters()) before += p.numel();
  for (const auto& p : smaller->parameters()) after += p.numel();
  EXPECT_LT(after, before);
  for (const auto& group : channel_groups(*smaller))
    EXPECT_EQ(group.channels, smaller->meta().widths.at(group.name)) << group.name;

  // Written and read back, the smaller model rebuilds itself from its widths.
  const auto path = std::filesystem::temp_directory_path() / ("rdprune_smaller_" + arch + ".pt");
  smaller->save(path.string());
  auto loaded = load_network(path.string());
  EXPECT_TRUE(torch::allclose(outputs(*loaded, x), masked, 1e-4, 1e-5));
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(
    Zoo, RemovedChannels,
    ::testing::Values(std::make_pair(std::string("mlp"), std::vector<int64_t>{1, 28, 28}),
                      std::make_pair(std::string("lenet5"), std::vector<int64_t>{1, 28, 28}),
                      std::make_pair(std::string("resnet20"), std::vector<int64_t>{3, 32, 32}),
                      std::make_pair(std::string("vgg16"), std::vector<int64_t>{1, 28, 28}),
                      std::make_pair(std::string("resnet50"), std::vector<int64_t>{3, 32, 32}),
                      std::make_pair(std::string("vit"), std::vector<int64_t>{1, 28, 28})),
    [](const auto& info) { return info.param.first; });

TEST(ChannelGroups, RankByL1NormAndCostWhatTheyRemove) {
  auto network = testing::fresh_network("resnet20");
  const auto groups = channel_groups(*network);
  // One inside each residual block (9), and each stage's residual stream (3).
  ASSERT_EQ(groups.size(), 12u);
  EXPECT_EQ(groups[1].name, "layer1.0.conv1");
  EXPECT_EQ(groups[1].channels, 16);

  // The order ascends by the producing filters' L1 norms.
  const torch::Tensor order = channel_order(*network, groups[1]);
  const torch::Tensor norms = network->layers()[1].weight.detach().abs().flatten(1).sum(1);
  ASSERT_EQ(network->layers()[1].name, "layer1.0.conv1");
  EXPECT_TRUE(norms.index_select(0, order).diff().ge(0).all().item<bool>());

  // The first stage's stream: the stem and every block's conv2, tied by the additions, read by
  // every block's conv1 and the next stage's first block and shortcut; ranked by the L1 norms
  // summed over the four.
  const auto layers_of = [](const ChannelGroup& group, int64_t dim) {
    std::vector<std::string> names;
    for (const auto& slice : group.slices)
      if (slice.dim == dim && slice.tensor.find("bn") == std::string::npos &&
          slice.tensor.find("downsample.1") == std::string::npos)
        names.push_back(slice.tensor);
    return names;
  };
  EXPECT_EQ(groups[0].name, "conv1");
  EXPECT_EQ(layers_of(groups[0], 0),
            (std::vector<std::string>{"conv1.weight", "layer1.0.conv2.weight", "layer1.1.conv2.weight",
                                      "layer1.2.conv2.weight"}));
  EXPECT_EQ(
      layers_of(groups[0], 1),
      (std::vector<std::string>{"layer1.0.conv1.weight", "layer1.1.conv1.weight", "layer1.2.conv1.weight",
                                "layer2.0.conv1.weight", "layer2.0.downsample.0.weight"}));
  EXPECT_EQ(groups[9].name, "layer3.0.conv2");
  EXPECT_EQ(layers_of(groups[9], 0),
            (std::vector<std::string>{"layer3.0.conv2.weight", "layer3.0.downsample.0.weight",
                                      "layer3.1.conv2.weight", "layer3.2.conv2.weight"}));
  EXPECT_EQ(layers_of(groups[9], 1).back(), "fc.weight");
  torch::Tensor tied = torch::zeros({16}, torch::kFloat64);
  for (const auto& layer : network->layers())
    if (layer.name == "conv1" ||
        (layer.name.rfind("layer1.", 0) == 0 && layer.name.find("conv2") != std::string::npos))
      tied += layer.weight.detach().abs().flatten(1).sum(1).to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(channel_scores(*network, groups[0], "magnitude"), tied));

  // The cost model counts exactly the weights the smaller network has.
  const auto infos = layer_census(*network, {1, 28, 28});
  const ChannelCostModel model = channel_cost_model(groups, infos);
  std::vector<int64_t> kept;
  for (const auto& group : groups) {
    kept.push_back(group.channels / 2);
    mask_channels(*network, group, keep_last(channel_order(*network, group), group.channels / 2));
  }
  auto smaller = remove_pruned_channels(*network);
  int64_t weights = 0;
  for (const auto& layer : smaller->layers()) weights += layer.weight.numel();
  EXPECT_EQ(channel_cost(model, kept, BudgetKind::kParams), static_cast<double>(weights));
}

TEST(ChannelGroups, RankByBatchNormScaleWhereThereIsOne) {
  auto network = testing::fresh_network("resnet20");
  disturb_buffers(*network);  // batch-norm scales of either sign
  const auto groups = channel_groups(*network);
  // The block registers conv1 (no bias), then bn1's scale.
  ASSERT_EQ(network->layers()[1].name, "layer1.0.conv1");
  const auto parameters = network->parameters();
  torch::Tensor gamma;
  for (size_t i = 0; i + 1 < parameters.size(); ++i)
    if (parameters[i].data_ptr() == network->layers()[1].weight.data_ptr())
      gamma = parameters[i + 1].detach().abs();
  ASSERT_TRUE(gamma.defined());
  ASSERT_EQ(gamma.sizes(), (std::vector<int64_t>{16}));
  const torch::Tensor order = channel_order(*network, groups[1], "bn_scale");
  EXPECT_TRUE(gamma.index_select(0, order).diff().ge(0).all().item<bool>());
  EXPECT_TRUE(torch::allclose(channel_scores(*network, groups[1], "bn_scale"), gamma.to(torch::kFloat64)));
  // A channel out of use scores -1 and goes first.
  mask_channels(*network, groups[1], keep_last(torch::arange(16), 15));  // channel 0 removed
  EXPECT_EQ(channel_order(*network, groups[1], "bn_scale")[0].item<int64_t>(), 0);
  EXPECT_EQ(channel_scores(*network, groups[1], "bn_scale")[0].item<double>(), -1.0);

  auto lenet = testing::fresh_network("lenet5");
  EXPECT_THROW(channel_scores(*lenet, channel_groups(*lenet)[0], "bn_scale"), Error);  // no batch norm
  EXPECT_THROW(channel_scores(*network, groups[1], "taylor"), Error);
}

TEST(ChannelGroups, RefuseAPlanForOtherGroups) {
  auto network = testing::fresh_network("lenet5");
  Plan plan;
  plan.method = "uniform";
  plan.granularity = "channel";
  plan.layers = {{"conv1", 6, 3, 0}, {"conv2", 16, 8, 0}, {"fc1", 120, 60, 0}, {"fc9", 84, 42, 0}};
  EXPECT_THROW(apply_channel_plan(*network, plan, "plan.json"), Error);
  plan.layers.pop_back();
  EXPECT_THROW(apply_channel_plan(*network, plan, "plan.json"), Error);
}

TEST(ChannelGroups, AVitsHeadsAndHiddenUnits) {
  auto network = network_of("vit", {1, 28, 28});
  const auto groups = channel_groups(*network);
  // Per block, its heads (4 of 16 features) and its MLP's hidden units (128).
  ASSERT_EQ(groups.size(), 8u);
  EXPECT_EQ(groups[0].name, "blocks.0.attn");
  EXPECT_EQ(groups[0].channels, 4);
  EXPECT_EQ(groups[1].name, "blocks.0.mlp.fc1");
  EXPECT_EQ(groups[1].channels, 128);
  std::vector<std::string> producers, readers;
  for (const auto& slice : groups[0].slices) {
    EXPECT_EQ(slice.per_channel, 16) << slice.tensor;
    (slice.dim == 0 ? producers : readers).push_back(slice.tensor);
  }
  EXPECT_EQ(producers, (std::vector<std::string>{"blocks.0.attn.q.weight", "blocks.0.attn.q.bias",
                                                 "blocks.0.attn.k.weight", "blocks.0.attn.k.bias",
                                                 "blocks.0.attn.v.weight", "blocks.0.attn.v.bias"}));
  EXPECT_EQ(readers, std::vector<std::string>{"blocks.0.attn.proj.weight"});

  // A head ranks by the L1 norm of its rows of q, k and v together.
  torch::Tensor heads = torch::zeros({4}, torch::kFloat64);
  for (const auto& layer : network->layers())
    if (layer.name == "blocks.0.attn.q" || layer.name == "blocks.0.attn.k" || layer.name == "blocks.0.attn.v")
      heads += layer.weight.detach().abs().reshape({4, -1}).sum(1).to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(channel_scores(*network, groups[0], "magnitude"), heads));

  // One head and half the hidden units kept in every block: q, k, v shrink to one head's rows,
  // proj and fc2 to as many inputs, and the cost model counts exactly the weights that remain.
  const ChannelCostModel model = channel_cost_model(groups, layer_census(*network, {1, 28, 28}));
  std::vector<int64_t> kept;
  for (const auto& group : groups) {
    kept.push_back(group.channels == 4 ? 1 : group.channels / 2);
    mask_channels(*network, group, keep_last(channel_order(*network, group), kept.back()));
  }
  auto smaller = remove_pruned_channels(*network);
  EXPECT_EQ(smaller->meta().widths.at("blocks.2.attn"), 1);
  EXPECT_EQ(smaller->meta().widths.at("blocks.2.mlp.fc1"), 64);
  int64_t weights = 0;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& layer : smaller->layers()) {
    weights += layer.weight.numel();
    shapes[layer.name] = layer.weight.sizes().vec();
  }
  EXPECT_EQ(shapes.at("blocks.2.attn.k"), (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(shapes.at("blocks.2.attn.proj"), (std::vector<int64_t>{64, 16}));
  EXPECT_EQ(shapes.at("blocks.2.mlp.fc2"), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(channel_cost(model, kept, BudgetKind::kParams), static_cast<double>(weights));
}

TEST(ChannelCurves, StartAtZeroMoveAsChannelsGoAndMatchFullForwards) {
  auto network = testing::fresh_network("resnet20", 1);
  DatasetOptions data;
  data.name = "synthetic";
  data.synthetic_size = 16;
  const Dataset calibration = load_dataset(data).train;
  const auto infos = layer_census(*network, {1, 28, 28});
  CurveOptions options;
  options.levels = 4;
  options.batch_size = 8;
  const std::string before = fingerprint(*network);
  const CurveSet suffix = measure_channel_curves(*network, calibration, "random", infos, options);
  EXPECT_EQ(fingerprint(*network), before);  // every group put back
  options.plain = true;
  const CurveSet plain = measure_channel_curves(*network, calibration, "random", infos, options);
  ASSERT_EQ(suffix.layers.size(), 12u);
  EXPECT_EQ(suffix.granularity, "channel");
  for (size_t g = 0; g < suffix.layers.size(); ++g) {
    const LayerCurve& curve = suffix.layers[g];
    EXPECT_EQ(curve.kept, (std::vector<int64_t>{curve.weights, curve.weights * 3 / 4, curve.weights / 2,
                                                curve.weights / 4, 1}));
    EXPECT_NEAR(curve.distortion.front(), 0.0, 1e-9);
    EXPECT_GT(curve.distortion.back(), 0.0);
    for (size_t k = 0; k < curve.kept.size(); ++k)
      EXPECT_NEAR(curve.distortion[k], plain.layers[g].distortion[k],
                  1e-6 + 1e-4 * plain.layers[g].distortion[k]);
  }
}

TEST(ChannelCurves, BatchNormAwareRunOnBatchStatisticsAndPutThemBack) {
  auto network = testing::fresh_network("resnet20", 1);
  disturb_buffers(*network);  // running statistics far from any batch's
  DatasetOptions data;
  data.name = "synthetic";
  data.synthetic_size = 16;
  const Dataset calibration = load_dataset(data).train;
  const auto infos = layer_census(*network, {1, 28, 28});
  std::vector<torch::Tensor> before;
  for (const auto& buffer : network->buffers()) before.push_back(buffer.clone());
  CurveOptions options;
  options.levels = 4;
  options.batch_size = 8;
  const CurveSet running = measure_channel_curves(*network, calibration, "random", infos, options);
  options.recalibrate_bn = true;
  const CurveSet aware = measure_channel_curves(*network, calibration, "random", infos, options);
  EXPECT_TRUE(aware.bn_recalibrated);
  const auto after = network->buffers();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i])) << i;
  options.plain = true;  // full forwards on batch statistics: the oracle
  const CurveSet plain = measure_channel_curves(*network, calibration, "random", infos, options);
  bool differs = false;
  for (size_t g = 0; g < aware.layers.size(); ++g) {
    for (size_t k = 0; k < aware.layers[g].kept.size(); ++k) {
      EXPECT_NEAR(aware.layers[g].distortion[k], plain.layers[g].distortion[k],
                  1e-6 + 1e-4 * plain.layers[g].distortion[k]);
      differs = differs || std::abs(aware.layers[g].distortion[k] - running.layers[g].distortion[k]) >
                               1e-3 * (running.layers[g].distortion[k] + 1e-9);
    }
  }
  EXPECT_TRUE(differs);  // batch statistics are not the running ones
}

TEST(ChannelCurves, RefuseOptionsTheyDoNotTake) {
  auto network = testing::fresh_network("lenet5");
  DatasetOptions data;
  data.name = "synthetic";
  data.synthetic_size = 4;
  const Dataset calibration = load_dataset(data).train;
  const auto infos = layer_census(*network, {1, 28, 28});
  auto refused = [&](auto change, const std::string& why) {
    CurveOptions options;
    options.levels = 2;
    change(options);
    try {
      measure_channel_curves(*network, calibration, "random", infos, options);
      ADD_FAILURE() << "accepted: " << why;
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(why), std::string::npos) << error.what();
    }
  };
  refused([](CurveOptions& o) { o.estimator = "taylor"; }, "Taylor");
  refused([](CurveOptions& o) { o.level_batch = 2; }, "one level at a time");
  refused([](CurveOptions& o) { o.context_kept = {1, 1, 1, 1, 1}; }, "around a plan");
}

}  // namespace
}  // namespace rdprune
