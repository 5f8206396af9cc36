#include <fstream>
#include <limits>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "rdprune/error.h"
#include "rdprune/network.h"
#include "rdprune/zoo.h"

namespace rdprune {
namespace {
using testing::TempDir;

ModelMeta meta_for(const std::string& arch, std::vector<int64_t> shape, int64_t classes = 10) {
  ModelMeta meta;
  meta.arch = arch;
  meta.input_shape = std::move(shape);
  meta.num_classes = classes;
  meta.dataset = "fashion-mnist";
  meta.normalization = {{0.2860}, {0.3530}};
  return meta;
}

TEST(Census, FlopsPerWeightComeFromOutputSizes) {
  torch::manual_seed(0);  // weights that hold no exact zero (a dense layer's sparsity counts them)
  auto network = create_network(meta_for("resnet20", {1, 28, 28}));
  const auto infos = layer_census(*network, {1, 28, 28});
  ASSERT_EQ(infos.size(), 22u);
  EXPECT_EQ(infos[0].flops_per_weight, 28 * 28);  // conv1: 28x28 outputs per channel
  EXPECT_EQ(infos[7].flops_per_weight, 14 * 14);  // layer2.0.conv1, stride 2
  EXPECT_EQ(infos[9].flops_per_weight, 14 * 14);  // layer2.0.downsample.0
  EXPECT_EQ(infos[14].flops_per_weight, 7 * 7);   // layer3.0.conv1
  EXPECT_EQ(infos[21].flops_per_weight, 1);       // fc
  for (const auto& info : infos) {
    EXPECT_EQ(info.calls, 1) << info.name;
    EXPECT_EQ(info.sparsity, 0.0) << info.name;
  }
  EXPECT_EQ(infos[3].shape, (std::vector<int64_t>{16, 16, 3, 3}));
  EXPECT_EQ(infos[3].weights, 2304);
}

TEST(Census, WithoutAShapeFlopsAreUnknown) {
  auto network = create_network(meta_for("mlp", {1, 28, 28}));
  const auto infos = layer_census(*network, {});
  EXPECT_LT(infos[0].flops_per_weight, 0);
  EXPECT_EQ(layer_census(*network, {1, 28, 28})[0].flops_per_weight, 1.0);
}

TEST(Checkpoint, RoundTripsWeightsBuffersAndMasks) {
  TempDir dir;
  torch::manual_seed(3);
  auto network = create_network(meta_for("resnet20", {1, 28, 28}));
  // Give batch norm non-trivial running statistics.
  network->set_training(true);
  {
    torch::NoGradGuard no_grad;
    network->forward(torch::randn({8, 1, 28, 28}));
  }
  torch::Tensor mask = torch::rand(network->layers()[4].weight.sizes()) > 0.5;
  network->set_mask(4, mask);
  network->apply_masks();
  const std::string path = dir.file("model.pt");
  network->save(path);

  auto loaded = load_network(path);
  EXPECT_EQ(loaded->format(), "checkpoint");
  EXPECT_EQ(loaded->meta().arch, "resnet20");
  EXPECT_EQ(loaded->meta().input_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(loaded->meta().dataset, "fashion-mnist");
  ASSERT_TRUE(loaded->masks()[4].defined());
  EXPECT_TRUE(torch::equal(loaded->masks()[4], mask));
  EXPECT_FALSE(loaded->masks()[3].defined());
  torch::NoGradGuard no_grad;
  network->set_training(false);
  loaded->set_training(false);
  const auto x = torch::randn({4, 1, 28, 28});
  EXPECT_TRUE(torch::equal(network->forward(x), loaded->forward(x)));
  const auto infos = layer_census(*loaded, {1, 28, 28});
  EXPECT_NEAR(infos[4].sparsity, 1.0 - mask.to(torch::kDouble).mean().item<double>(), 1e-9);
}

TEST(Checkpoint, ApplyMasksZeroesExactlyTheMaskedWeights) {
  auto network = create_network(meta_for("mlp", {1, 28, 28}));
  torch::Tensor mask = torch::ones({100, 300}, torch::kBool);
  mask.index_put_({0}, false);
  network->set_mask(1, mask);
  network->apply_masks();
  EXPECT_EQ(network->layers()[1].weight[0].abs().sum().item<double>(), 0.0);
  EXPECT_GT(network->layers()[1].weight[1].abs().sum().item<double>(), 0.0);
  EXPECT_THROW(network->set_mask(1, torch::ones({3, 3}, torch::kBool)), Error);
}

TEST(Checkpoint, LoadingBadFilesIsAClearError) {
  TempDir dir;
  EXPECT_THROW(load_network(dir.file("missing.pt")), Error);
  EXPECT_THROW(load_network(dir.path()), Error);
  {
    std::ofstream out(dir.file("text.pt"));
    out << "this is not a model\n";
  }
  try {
    load_network(dir.file("text.pt"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a rdprune checkpoint or TorchScript file"), std::string::npos);
  }
  auto network = create_network(meta_for("lenet5", {1, 28, 28}));
  network->save(dir.file("lenet.pt"));
  testing::truncate_file(dir.file("lenet.pt"), 1000);
  EXPECT_THROW(load_network(dir.file("lenet.pt")), Error);
}

TEST(Checkpoint, ModelsWithNanOrInfiniteValuesAreRefusedWhereTheyAreRead) {
  TempDir dir;
  auto network = create_network(meta_for("lenet5", {1, 28, 28}));
  {
    torch::NoGradGuard no_grad;
    network->layers()[2].weight.view({-1})[7] = std::numeric_limits<float>::quiet_NaN();
  }
  network->save(dir.file("nan.pt"));
  try {
    load_network(dir.file("nan.pt"));
    FAIL() << "a model with a NaN weight loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer " + network->layers()[2].name + " has weights that are NaN"),
              std::string::npos)
        << e.what();
  }
  auto biased = create_network(meta_for("lenet5", {1, 28, 28}));
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : biased->parameters()) {
      if (parameter.dim() == 1) {
        parameter[0] = std::numeric_limits<float>::infinity();
        break;
      }
    }
  }
  biased->save(dir.file("inf.pt"));
  try {
    load_network(dir.file("inf.pt"));
    FAIL() << "a model with an infinite bias loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a parameter holds NaN or infinite values"), std::string::npos)
        << e.what();
  }
}

// A checkpoint whose record reads `meta` and whose weights are those of the zoo model `weights`.
void write_checkpoint(const std::string& path, const nlohmann::json& meta, const ZooSpec& weights) {
  torch::serialize::OutputArchive archive;
  archive.write("rdprune_meta", c10::IValue(meta.dump()));
  torch::serialize::OutputArchive model;
  make_zoo_model(weights)->save(model);
  archive.write("model", model);
  archive.save_to(path);
}

// The message of the Error (not UsageError: the file is at fault, not the flags) that loading
// `path` throws; empty when it loads.
std::string load_error(const std::string& path) {
  try {
    load_network(path);
  } catch (const UsageError& e) {
    return std::string("usage error: ") + e.what();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, TheRecordAndTheWeightsMustDescribeTheSameModel) {
  TempDir dir;
  const nlohmann::json lenet = {{"schema", "rdprune.checkpoint/1"},
                                {"arch", "lenet5"},
                                {"input_shape", {1, 28, 28}},
                                {"num_classes", 10},
                                {"mean", {0.286}},
                                {"std", {0.353}}};
  const ZooSpec lenet_weights{"lenet5", 1, 28, 10, {}};
  write_checkpoint(dir.file("ok.pt"), lenet, lenet_weights);
  EXPECT_EQ(load_error(dir.file("ok.pt")), "");
  // Loading replaces tensors whatever their shape: every parameter is checked against the record.
  nlohmann::json other = lenet;
  other["arch"] = "mlp";
  write_checkpoint(dir.file("mlp.pt"), other, lenet_weights);
  EXPECT_NE(load_error(dir.file("mlp.pt")).find("weights do not match architecture mlp"), std::string::npos);
  other = lenet;
  other["num_classes"] = 3;
  write_checkpoint(dir.file("classes.pt"), other, lenet_weights);
  EXPECT_NE(load_error(dir.file("classes.pt")).find("fc3.weight has shape 10x84, expected 3x84"),
            std::string::npos)
      << load_error(dir.file("classes.pt"));
  // A record that asks for more memory than there is: the file is named, in one line.
  other = lenet;
  other["num_classes"] = int64_t{1} << 40;
  write_checkpoint(dir.file("huge.pt"), other, lenet_weights);
  const std::string huge = load_error(dir.file("huge.pt"));
  EXPECT_NE(huge.find("huge.pt: cannot build the model its metadata describes"), std::string::npos) << huge;
  EXPECT_EQ(huge.find('\n'), std::string::npos) << huge;
  // A record this build cannot make, or with an unusable normalisation: the file is named.
  other = lenet;
  other["arch"] = "resnet999";
  write_checkpoint(dir.file("arch.pt"), other, lenet_weights);
  EXPECT_NE(load_error(dir.file("arch.pt")).find("arch.pt: checkpoint metadata describes no model"),
            std::string::npos)
      << load_error(dir.file("arch.pt"));
  for (const auto& [mean, std] :
       {std::pair<nlohmann::json, nlohmann::json>{{0.286}, {0.0}}, {{0.2, 0.3, 0.4}, {0.353}}}) {
    other = lenet;
    other["mean"] = mean;
    other["std"] = std;
    write_checkpoint(dir.file("norm.pt"), other, lenet_weights);
    EXPECT_NE(load_error(dir.file("norm.pt")).find("norm.pt: corrupt checkpoint metadata (normalisation"),
              std::string::npos)
        << load_error(dir.file("norm.pt"));
  }
}

TEST(Checkpoint, LogitsCheckCatchesMismatchedClasses) {
  auto network = create_network(meta_for("lenet5", {1, 28, 28}, 10));
  EXPECT_NO_THROW(check_logits(*network, {1, 28, 28}, 10));
  EXPECT_THROW(check_logits(*network, {1, 28, 28}, 100), Error);
}

}  // namespace
}  // namespace rdprune
