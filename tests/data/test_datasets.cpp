#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fixtures.h"
#include "rdprune/dataset.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {
using testing::TempDir;

DatasetOptions idx_options(const std::string& dir) {
  DatasetOptions options;
  options.name = "fashion-mnist";
  options.data_dir = dir;
  return options;
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Idx, ReadsGzipAndRawAlike) {
  TempDir gz;
  TempDir raw;
  testing::write_idx_dataset(gz.path(), 20, 10, /*gzip=*/true);
  testing::write_idx_dataset(raw.path(), 20, 10, /*gzip=*/false);
  const auto a = load_dataset(idx_options(gz.path()));
  const auto b = load_dataset(idx_options(raw.path()));
  EXPECT_EQ(a.train.size(), 20);
  EXPECT_EQ(a.test.size(), 10);
  EXPECT_EQ(a.train.sample_shape(), (std::vector<int64_t>{1, 28, 28}));
  const auto index = torch::arange(20);
  EXPECT_TRUE(torch::equal(a.train.batch(index).images, b.train.batch(index).images));
  EXPECT_TRUE(torch::equal(a.train.batch(index).labels, b.train.batch(index).labels));
}

TEST(Idx, NormalisesWithTheDatasetDefaults) {
  TempDir dir;
  std::vector<uint8_t> pixels(2 * 28 * 28, 255);
  testing::write_idx(dir.file("train-images-idx3-ubyte"), {2, 28, 28}, pixels, false);
  testing::write_idx(dir.file("train-labels-idx1-ubyte"), {2}, {0, 1}, false);
  testing::write_idx(dir.file("t10k-images-idx3-ubyte"), {2, 28, 28}, pixels, false);
  testing::write_idx(dir.file("t10k-labels-idx1-ubyte"), {2}, {0, 1}, false);
  const auto splits = load_dataset(idx_options(dir.path()));
  const auto batch = splits.test.batch(torch::arange(2));
  // (1.0 - 0.2860) / 0.3530 for a white pixel.
  EXPECT_NEAR(batch.images.max().item<double>(), (1.0 - 0.2860) / 0.3530, 1e-5);
  EXPECT_EQ(batch.labels[1].item<int64_t>(), 1);
  DatasetOptions custom = idx_options(dir.path());
  custom.mean = {0.5};
  custom.std = {0.5};
  EXPECT_NEAR(load_dataset(custom).test.batch(torch::arange(2)).images.max().item<double>(), 1.0, 1e-6);
}

TEST(Idx, TruncatedFileIsAnError) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 20, 10, false);
  testing::truncate_file(dir.file("train-images-idx3-ubyte"), 4 + 12 + 100);
  const std::string message = error_of([&] { load_dataset(idx_options(dir.path())); });
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  EXPECT_NE(message.find("train-images-idx3-ubyte"), std::string::npos) << message;
}

TEST(Idx, CorruptGzipIsAnError) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 20, 10, true);
  const std::string path = dir.file("t10k-images-idx3-ubyte.gz");
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path));
  testing::truncate_file(path, size / 2);
  EXPECT_THROW(load_dataset(idx_options(dir.path())), Error);
}

TEST(Idx, WrongMagicIsAnError) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 20, 10, false);
  // A float IDX (type code 0x0D) is not what the image reader expects.
  std::FILE* file = std::fopen(dir.file("train-labels-idx1-ubyte").c_str(), "r+b");
  std::fseek(file, 2, SEEK_SET);
  std::fputc(0x0D, file);
  std::fclose(file);
  const std::string message = error_of([&] { load_dataset(idx_options(dir.path())); });
  EXPECT_NE(message.find("wrong magic number"), std::string::npos) << message;
}

TEST(Idx, ImageAndLabelCountsMustAgree) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 20, 10, false);
  testing::write_idx(dir.file("t10k-labels-idx1-ubyte"), {9}, std::vector<uint8_t>(9, 1), false);
  const std::string message = error_of([&] { load_dataset(idx_options(dir.path())); });
  EXPECT_NE(message.find("10 images but"), std::string::npos) << message;
}

TEST(Idx, LabelOutOfRangeIsAnError) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 20, 10, false);
  testing::write_idx(dir.file("t10k-labels-idx1-ubyte"), {10}, std::vector<uint8_t>(10, 12), false);
  EXPECT_THROW(load_dataset(idx_options(dir.path())), Error);
}

TEST(Idx, MissingDirectoryAndFiles) {
  EXPECT_THROW(load_dataset(idx_options("/nonexistent/rdprune")), Error);
  TempDir empty;
  const std::string message = error_of([&] { load_dataset(idx_options(empty.path())); });
  EXPECT_NE(message.find("not found"), std::string::npos) << message;
}

TEST(Datasets, UnknownNameIsAUsageError) {
  DatasetOptions options;
  options.name = "imagenet21k";
  EXPECT_THROW(load_dataset(options), UsageError);
}

TEST(Datasets, FlagsForOtherDatasetsAreUsageErrors) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 4, 4, false);
  DatasetOptions options = idx_options(dir.path());
  EXPECT_NO_THROW(load_dataset(options));
  options.num_classes = 5;  // Fashion-MNIST has its own ten
  EXPECT_THROW(load_dataset(options), UsageError);
  options.num_classes = 0;
  options.channels = 3;  // imagefolder only
  EXPECT_THROW(load_dataset(options), UsageError);
  options.channels = 0;
  options.image_size = 32;
  EXPECT_THROW(load_dataset(options), UsageError);
  DatasetOptions synthetic;
  synthetic.name = "synthetic";
  synthetic.num_classes = 5;
  EXPECT_EQ(load_dataset(synthetic).train.num_classes(), 5);
}

TEST(Datasets, BadNormalisationIsAUsageError) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 4, 4, false);
  DatasetOptions options = idx_options(dir.path());
  options.mean = {0.1, 0.2};
  options.std = {0.3};
  EXPECT_THROW(load_dataset(options), UsageError);
  options.mean = {0.1};
  options.std = {0.0};
  EXPECT_THROW(load_dataset(options), UsageError);
  options.mean = {0.1, 0.2, 0.3};
  options.std = {1, 1, 1};
  EXPECT_THROW(load_dataset(options), UsageError);  // 3 entries for 1 channel
}

TEST(Cifar, ReadsBothVariants) {
  TempDir ten;
  testing::write_cifar_dataset(ten.path(), 1, 6);
  DatasetOptions options;
  options.name = "cifar10";
  options.data_dir = ten.path();
  const auto splits = load_dataset(options);
  EXPECT_EQ(splits.train.size(), 30);
  EXPECT_EQ(splits.test.size(), 6);
  EXPECT_EQ(splits.train.sample_shape(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(splits.train.num_classes(), 10);

  TempDir hundred;
  testing::write_cifar_dataset(hundred.path(), 2, 8);
  options.name = "cifar100";
  options.data_dir = hundred.path();
  const auto splits100 = load_dataset(options);
  EXPECT_EQ(splits100.train.size(), 8);
  EXPECT_EQ(splits100.train.num_classes(), 100);
  // The fine label (second byte) is the one used.
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> labels;
  testing::make_images(8, 32, 100, 10, &pixels, &labels);
  EXPECT_EQ(splits100.train.batch(torch::arange(1)).labels[0].item<int64_t>(), labels[0]);
}

TEST(Cifar, TruncatedFileIsAnError) {
  TempDir dir;
  testing::write_cifar_dataset(dir.path(), 1, 4);
  testing::truncate_file(dir.file("data_batch_3.bin"), 3073 * 2 + 100);
  DatasetOptions options;
  options.name = "cifar10";
  options.data_dir = dir.path();
  const std::string message = error_of([&] { load_dataset(options); });
  EXPECT_NE(message.find("data_batch_3.bin"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST(Cifar, NeedsADataDirectory) {
  DatasetOptions options;
  options.name = "cifar10";
  EXPECT_THROW(load_dataset(options), UsageError);
}

TEST(ImageFolder, DecodesAndResizes) {
  TempDir dir;
  testing::write_image_folder(dir.path(), 3, 2, 20);
  DatasetOptions options;
  options.name = "imagefolder";
  options.data_dir = dir.path();
  options.image_size = 16;
  const auto splits = load_dataset(options);
  EXPECT_EQ(splits.train.size(), 6);
  EXPECT_EQ(splits.train.num_classes(), 3);
  EXPECT_EQ(splits.train.sample_shape(), (std::vector<int64_t>{3, 16, 16}));
  const auto labels = splits.train.batch(torch::arange(6)).labels;
  EXPECT_TRUE(torch::equal(labels, torch::tensor({0, 0, 1, 1, 2, 2}, torch::kInt64)));
  options.channels = 1;
  EXPECT_EQ(load_dataset(options).train.sample_shape(), (std::vector<int64_t>{1, 16, 16}));
}

TEST(ImageFolder, CorruptImageIsAnError) {
  TempDir dir;
  testing::write_image_folder(dir.path(), 2, 1, 8);
  testing::truncate_file(dir.file("class1/0.png"), 20);
  DatasetOptions options;
  options.name = "imagefolder";
  options.data_dir = dir.path();
  const std::string message = error_of([&] { load_dataset(options); });
  EXPECT_NE(message.find("class1/0.png"), std::string::npos) << message;
}

TEST(Synthetic, IsSeededNormalNoise) {
  DatasetOptions options;
  options.name = "synthetic";
  options.input_shape = {3, 8, 8};
  options.synthetic_size = 512;
  options.seed = 3;
  const auto a = load_dataset(options);
  const auto b = load_dataset(options);
  const auto x = a.train.batch(torch::arange(512)).images;
  EXPECT_TRUE(torch::equal(x, b.train.batch(torch::arange(512)).images));
  EXPECT_NEAR(x.mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(x.std().item<double>(), 1.0, 0.02);
  options.seed = 4;
  EXPECT_FALSE(torch::equal(x, load_dataset(options).train.batch(torch::arange(512)).images));
}

TEST(BatchLoader, OrderIsFixedBySeedAndEpoch) {
  DatasetOptions options;
  options.name = "synthetic";
  options.synthetic_size = 64;
  const auto splits = load_dataset(options);
  BatchLoader a(splits.train, 16, /*shuffle=*/true, /*seed=*/5);
  BatchLoader b(splits.train, 16, /*shuffle=*/true, /*seed=*/5);
  EXPECT_EQ(a.num_batches(), 4);
  EXPECT_TRUE(torch::equal(a.get(2).images, b.get(2).images));
  const auto epoch0 = a.get(0).images.clone();
  a.set_epoch(1);
  EXPECT_FALSE(torch::equal(a.get(0).images, epoch0));
  BatchLoader ordered(splits.train, 16, /*shuffle=*/false, 5);
  EXPECT_TRUE(torch::equal(ordered.get(1).images, splits.train.batch(torch::arange(16, 32)).images));
}

TEST(BatchLoader, AugmentationOnlyWhenAsked) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 32, 8, false);
  const auto splits = load_dataset(idx_options(dir.path()));
  BatchLoader plain(splits.train, 32, false, 1);
  BatchLoader augmented(splits.train, 32, false, 1, Augmentation{2, true});
  const auto x = plain.get(0).images;
  const auto y = augmented.get(0).images;
  EXPECT_EQ(x.sizes(), y.sizes());
  EXPECT_FALSE(torch::equal(x, y));
  EXPECT_TRUE(torch::equal(y, BatchLoader(splits.train, 32, false, 1, Augmentation{2, true}).get(0).images));
  EXPECT_TRUE(torch::equal(plain.get(0).labels, augmented.get(0).labels));
}

TEST(Dataset, HeadTakesTheFirstSamples) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 20, 10, false);
  const auto splits = load_dataset(idx_options(dir.path()));
  const Dataset head = splits.train.head(5);
  EXPECT_EQ(head.size(), 5);
  EXPECT_TRUE(torch::equal(head.batch(torch::arange(5)).images, splits.train.batch(torch::arange(5)).images));
  EXPECT_EQ(splits.train.head(100).size(), 20);
}

TEST(Dataset, SliceTakesTheSamplesAfterAnOffsetClippedToTheSplit) {
  TempDir dir;
  testing::write_idx_dataset(dir.path(), 20, 10, false);
  const auto splits = load_dataset(idx_options(dir.path()));
  const Dataset middle = splits.train.slice(5, 10);
  EXPECT_EQ(middle.size(), 10);
  EXPECT_TRUE(
      torch::equal(middle.batch(torch::arange(10)).labels, splits.train.batch(torch::arange(5, 15)).labels));
  EXPECT_TRUE(
      torch::equal(middle.batch(torch::arange(10)).images, splits.train.batch(torch::arange(5, 15)).images));
  EXPECT_EQ(splits.train.slice(15, 10).size(), 5);
  EXPECT_EQ(splits.train.slice(20, 10).size(), 0);
  EXPECT_EQ(splits.train.slice(30, 10).size(), 0);
}

}  // namespace
}  // namespace rdprune
