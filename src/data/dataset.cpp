#include "rdprune/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/sample_order.h"
#include "rdprune/tensor_hash.h"
#include "rdprune/text.h"

namespace rdprune {
namespace fs = std::filesystem;

namespace {

struct DatasetDefaults {
  std::string name;
  std::string data_dir;
  Normalization normalization;
};

const std::vector<DatasetDefaults>& defaults_table() {
  static const std::vector<DatasetDefaults> table = {
      {"fashion-mnist", "/usr/share/datasets/fashion-mnist", {{0.2860}, {0.3530}}},
      {"mnist", "/usr/share/datasets/mnist", {{0.1307}, {0.3081}}},
      {"cifar10", "", {{0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}}},
      {"cifar100", "", {{0.5071, 0.4865, 0.4409}, {0.2673, 0.2564, 0.2762}}},
      {"imagefolder", "", {{0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}}},
      {"synthetic", "", {{0.0}, {1.0}}},
      {"tensors", "", {{0.0}, {1.0}}},
  };
  return table;
}

const DatasetDefaults& defaults_for(const std::string& name) {
  for (const auto& entry : defaults_table()) {
    if (entry.name == name) return entry;
  }
  std::string known;
  for (const auto& entry : defaults_table()) known += (known.empty() ? "" : ", ") + entry.name;
  throw UsageError("name", "unknown dataset '" + name + "' (known: " + known + ")");
}

std::string require_directory(const DatasetOptions& options, const DatasetDefaults& defaults) {
  const std::string dir = options.data_dir.empty() ? defaults.data_dir : options.data_dir;
  if (dir.empty()) {
    throw UsageError("data_dir", "dataset '" + options.name + "' has no default directory; pass one");
  }
  if (!fs::is_directory(dir)) {
    throw Error(dir + ": data directory for '" + options.name + "' does not exist");
  }
  return dir;
}

// IDX pair: images [N,H,W] (or [N,C,H,W]) and labels [N].
Dataset load_idx_split(const std::string& dir, const std::string& prefix, int64_t num_classes,
                       const Normalization& normalization, const std::string& name) {
  auto find = [&](const std::string& stem) {
    for (const std::string& candidate : {stem + ".gz", stem}) {
      const fs::path path = fs::path(dir) / candidate;
      if (fs::exists(path)) return path.string();
    }
    throw Error((fs::path(dir) / stem).string() + "[.gz]: IDX file not found");
  };
  const std::string images_path = find(prefix + "-images-idx3-ubyte");
  const std::string labels_path = find(prefix + "-labels-idx1-ubyte");
  torch::Tensor images = read_idx(images_path);
  torch::Tensor labels = read_idx(labels_path);
  if (images.dim() != 3) {
    throw Error(images_path + ": expected a 3-D image array [N,H,W], got rank " +
                std::to_string(images.dim()));
  }
  if (labels.dim() != 1) {
    throw Error(labels_path + ": expected a 1-D label array, got rank " + std::to_string(labels.dim()));
  }
  if (images.size(0) != labels.size(0)) {
    throw Error(images_path + ": holds " + std::to_string(images.size(0)) + " images but " + labels_path +
                " holds " + std::to_string(labels.size(0)) + " labels");
  }
  labels = labels.to(torch::kInt64);
  if (labels.numel() > 0 && labels.max().item<int64_t>() >= num_classes) {
    throw Error(labels_path + ": label " + std::to_string(labels.max().item<int64_t>()) +
                " out of range [0, " + std::to_string(num_classes) + ")");
  }
  return Dataset(images.unsqueeze(1), labels, num_classes, normalization, name + " " + prefix);
}

DatasetSplits load_idx_dataset(const DatasetOptions& options, const DatasetDefaults& defaults,
                               const Normalization& normalization) {
  const std::string dir = require_directory(options, defaults);
  return {load_idx_split(dir, "train", 10, normalization, options.name),
          load_idx_split(dir, "t10k", 10, normalization, options.name)};
}

DatasetSplits load_cifar(const DatasetOptions& options, const DatasetDefaults& defaults,
                         const Normalization& normalization) {
  std::string dir = require_directory(options, defaults);
  const bool is100 = options.name == "cifar100";
  // Accept either the extracted archive's directory or its parent.
  const std::string nested = is100 ? "cifar-100-binary" : "cifar-10-batches-bin";
  if (fs::is_directory(fs::path(dir) / nested)) dir = (fs::path(dir) / nested).string();
  auto require = [&](const std::string& file) {
    const std::string path = (fs::path(dir) / file).string();
    if (!fs::exists(path)) throw Error(path + ": CIFAR file not found");
    return path;
  };
  std::vector<std::string> train_files;
  std::vector<std::string> test_files;
  if (is100) {
    train_files = {require("train.bin")};
    test_files = {require("test.bin")};
  } else {
    for (int i = 1; i <= 5; ++i) train_files.push_back(require("data_batch_" + std::to_string(i) + ".bin"));
    test_files = {require("test_batch.bin")};
  }
  const int64_t label_bytes = is100 ? 2 : 1;
  const int64_t num_classes = is100 ? 100 : 10;
  auto [train_x, train_y] = read_cifar_records(train_files, label_bytes);
  auto [test_x, test_y] = read_cifar_records(test_files, label_bytes);
  for (const auto* labels : {&train_y, &test_y}) {
    if (labels->numel() > 0 && labels->max().item<int64_t>() >= num_classes) {
      throw Error(dir + ": CIFAR label " + std::to_string(labels->max().item<int64_t>()) +
                  " out of range [0, " + std::to_string(num_classes) + ")");
    }
  }
  return {Dataset(train_x, train_y, num_classes, normalization, options.name + " train"),
          Dataset(test_x, test_y, num_classes, normalization, options.name + " test")};
}

DatasetSplits load_imagefolder(const DatasetOptions& options, const DatasetDefaults& defaults,
                               const Normalization& normalization) {
  const std::string root = require_directory(options, defaults);
  const int64_t size = options.image_size > 0 ? options.image_size : 32;
  const int64_t channels = options.channels > 0 ? options.channels : 3;
  if (channels != 1 && channels != 3) throw UsageError("channels", "expected 1 or 3");
  // root/train + root/test (or root/val) when present; otherwise root serves both splits.
  std::string train_dir = root;
  std::string test_dir = root;
  if (fs::is_directory(fs::path(root) / "train")) {
    train_dir = (fs::path(root) / "train").string();
    if (fs::is_directory(fs::path(root) / "test")) {
      test_dir = (fs::path(root) / "test").string();
    } else if (fs::is_directory(fs::path(root) / "val")) {
      test_dir = (fs::path(root) / "val").string();
    } else {
      throw Error(root + ": has train/ but neither test/ nor val/");
    }
  }
  std::vector<std::string> train_classes;
  std::vector<std::string> test_classes;
  auto [train_x, train_y] = read_image_folder(train_dir, size, channels, &train_classes);
  auto [test_x, test_y] = read_image_folder(test_dir, size, channels, &test_classes);
  if (train_classes != test_classes) {
    throw Error(test_dir + ": class folders differ from " + train_dir + "'s");
  }
  const auto num_classes = static_cast<int64_t>(train_classes.size());
  return {Dataset(train_x, train_y, num_classes, normalization, "imagefolder " + train_dir),
          Dataset(test_x, test_y, num_classes, normalization, "imagefolder " + test_dir)};
}

// --data-dir: a file (both splits) or a directory with train.pt and test.pt.
DatasetSplits load_tensors(const DatasetOptions& options, const Normalization& normalization) {
  if (options.data_dir.empty()) {
    throw UsageError("data_dir",
                     "dataset 'tensors' needs a torch.save file or a directory of train.pt/test.pt");
  }
  std::string train_path = options.data_dir;
  std::string test_path = options.data_dir;
  if (fs::is_directory(options.data_dir)) {
    train_path = (fs::path(options.data_dir) / "train.pt").string();
    test_path = (fs::path(options.data_dir) / "test.pt").string();
  }
  auto [train_x, train_y] = read_tensor_file(train_path);
  auto [test_x, test_y] =
      test_path == train_path ? std::make_pair(train_x, train_y) : read_tensor_file(test_path);
  if (train_x.sizes().slice(1) != test_x.sizes().slice(1)) {
    throw Error(test_path + ": sample shape differs from " + train_path + "'s");
  }
  const int64_t largest = std::max(train_y.max().item<int64_t>(), test_y.max().item<int64_t>());
  if (options.num_classes > 0 && largest >= options.num_classes) {
    throw Error(fmt::format("{}: label {} is out of range for {} classes", options.data_dir, largest,
                            options.num_classes));
  }
  // A small file may lack the last class; the model's count stands when every label fits it.
  const int64_t num_classes = options.num_classes > 0           ? options.num_classes
                              : largest < options.model_classes ? options.model_classes
                                                                : largest + 1;
  return {Dataset(train_x, train_y, num_classes, normalization, "tensors " + train_path),
          Dataset(test_x, test_y, num_classes, normalization, "tensors " + test_path)};
}

DatasetSplits load_synthetic(const DatasetOptions& options, const Normalization& normalization) {
  const std::vector<int64_t> shape =
      options.input_shape.empty() ? std::vector<int64_t>{1, 28, 28} : options.input_shape;
  if (shape.size() != 3) throw UsageError("input_shape", "expected C,H,W for the synthetic dataset");
  const int64_t classes = options.num_classes > 0 ? options.num_classes : 10;
  if (options.synthetic_size <= 0) throw UsageError("synthetic_size", "expected a positive count");
  auto make = [&](uint64_t stream, const std::string& split) {
    auto generator = at::detail::createCPUGenerator(derive_seed(options.seed, stream));
    std::vector<int64_t> full = {options.synthetic_size};
    full.insert(full.end(), shape.begin(), shape.end());
    torch::Tensor x = at::normal(0.0, 1.0, full, generator);
    torch::Tensor y = torch::zeros({options.synthetic_size}, torch::kInt64);
    return Dataset(x, y, classes, normalization, "synthetic N(0,1) " + format_shape(shape) + " " + split);
  };
  return {make(0, "train"), make(1, "test")};
}

}  // namespace

const std::vector<std::string>& dataset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& entry : defaults_table()) out.push_back(entry.name);
    return out;
  }();
  return names;
}

Augmentation default_augmentation(const std::string& dataset_name) {
  if (dataset_name == "fashion-mnist") return {/*pad=*/2, /*flip=*/true};
  if (dataset_name == "mnist") return {/*pad=*/2, /*flip=*/false};  // digits are not mirror-symmetric
  if (dataset_name == "cifar10" || dataset_name == "cifar100" || dataset_name == "imagefolder") {
    return {/*pad=*/4, /*flip=*/true};
  }
  return {};
}

const std::string& Dataset::fingerprint() const {
  if (!fingerprint_.empty()) return fingerprint_;
  Fnv hash;
  for (const torch::Tensor& tensor : {images_, labels_}) {
    if (tensor.defined()) add_tensor(hash, tensor);
  }
  hash.add(&num_classes_, sizeof num_classes_);
  hash.add(normalization_.mean.data(), normalization_.mean.size() * sizeof(double));
  hash.add(normalization_.std.data(), normalization_.std.size() * sizeof(double));
  fingerprint_ = hash.hex();
  return fingerprint_;
}

DatasetSplits load_dataset(const DatasetOptions& options) {
  const DatasetDefaults& defaults = defaults_for(options.name);
  Normalization normalization = defaults.normalization;
  if (!options.mean.empty()) normalization.mean = options.mean;
  if (!options.std.empty()) normalization.std = options.std;
  if (normalization.mean.size() != normalization.std.size()) {
    throw UsageError("std", fmt::format("expected as many entries as mean ({}), got {}",
                                        normalization.mean.size(), normalization.std.size()));
  }
  for (double s : normalization.std) {
    if (!(s > 0)) throw UsageError("std", "every entry must be > 0");
  }
  // Options that only some datasets take: given for another, they would be silently ignored.
  if (options.num_classes > 0 && options.name != "synthetic" && options.name != "tensors")
    throw UsageError("num_classes",
                     "applies to synthetic and tensors data; " + options.name + " has its own classes");
  if ((options.channels > 0 || options.image_size > 0) && options.name != "imagefolder")
    throw UsageError(options.channels > 0 ? "channels" : "image_size",
                     "applies to imagefolder data; " + options.name + " images have their own");
  DatasetSplits splits;
  if (options.name == "fashion-mnist" || options.name == "mnist") {
    splits = load_idx_dataset(options, defaults, normalization);
  } else if (options.name == "cifar10" || options.name == "cifar100") {
    splits = load_cifar(options, defaults, normalization);
  } else if (options.name == "imagefolder") {
    splits = load_imagefolder(options, defaults, normalization);
  } else if (options.name == "tensors") {
    splits = load_tensors(options, normalization);
  } else {
    splits = load_synthetic(options, normalization);
  }
  const int64_t channels = splits.train.sample_shape()[0];
  if (options.mean.empty() && channels == 1 && normalization.mean.size() > 1) {
    // Grayscale images of a colour dataset's default: the channel average of the defaults.
    const auto average = [](const std::vector<double>& v) {
      double sum = 0;
      for (double x : v) sum += x;
      return std::vector<double>{sum / static_cast<double>(v.size())};
    };
    normalization.mean = average(normalization.mean);
    if (options.std.empty()) normalization.std = average(normalization.std);
    splits.train = Dataset(splits.train, normalization);
    splits.test = Dataset(splits.test, normalization);
  }
  if (normalization.mean.size() != 1 && static_cast<int64_t>(normalization.mean.size()) != channels) {
    throw UsageError("mean", fmt::format("expected 1 or {} entries (and as many in std) for {}, got {}",
                                         channels, options.name, normalization.mean.size()));
  }
  return splits;
}

Dataset::Dataset(torch::Tensor images, torch::Tensor labels, int64_t num_classes, Normalization normalization,
                 std::string description)
    : images_(std::move(images)),
      labels_(std::move(labels)),
      num_classes_(num_classes),
      normalization_(std::move(normalization)),
      description_(std::move(description)) {
  if (images_.dim() != 4) throw Error(description_ + ": expected images [N,C,H,W]");
  if (labels_.dim() != 1 || labels_.size(0) != images_.size(0)) {
    throw Error(description_ + ": image and label counts differ");
  }
  const auto channels = static_cast<int64_t>(normalization_.mean.size());
  mean_ = torch::tensor(normalization_.mean, torch::kFloat32).view({1, channels, 1, 1});
  std_ = torch::tensor(normalization_.std, torch::kFloat32).view({1, channels, 1, 1});
}

Dataset::Dataset(const Dataset& other, Normalization normalization)
    : Dataset(other.images_, other.labels_, other.num_classes_, std::move(normalization),
              other.description_) {}

std::vector<int64_t> Dataset::sample_shape() const {
  return {images_.size(1), images_.size(2), images_.size(3)};
}

Batch Dataset::batch(const torch::Tensor& indices) const {
  torch::Tensor x = images_.index_select(0, indices);
  if (x.scalar_type() == torch::kUInt8) x = x.to(torch::kFloat32).div_(255.0);
  return {x.sub_(mean_).div_(std_), labels_.index_select(0, indices)};
}

Dataset Dataset::head(int64_t n) const {
  const int64_t count = std::clamp<int64_t>(n, 0, size());
  return Dataset(images_.narrow(0, 0, count), labels_.narrow(0, 0, count), num_classes_, normalization_,
                 description_ + " (first " + std::to_string(count) + ")");
}

Dataset Dataset::slice(int64_t begin, int64_t n) const {
  const int64_t first = std::clamp<int64_t>(begin, 0, size());
  const int64_t count = std::clamp<int64_t>(n, 0, size() - first);
  return Dataset(images_.narrow(0, first, count), labels_.narrow(0, first, count), num_classes_,
                 normalization_, fmt::format("{} [{}:{}]", description_, first, first + count));
}

BatchLoader::BatchLoader(const Dataset& dataset, int64_t batch_size, bool shuffle, uint64_t seed,
                         Augmentation augmentation, bool drop_last)
    : dataset_(dataset),
      batch_size_(batch_size),
      shuffle_(shuffle),
      seed_(seed),
      augmentation_(augmentation),
      drop_last_(drop_last) {
  if (batch_size_ <= 0) throw UsageError("batch_size", "expected a positive count");
  set_epoch(0);
}

void BatchLoader::set_epoch(int64_t epoch) {
  epoch_ = epoch;
  const auto order =
      sample_order(dataset_.size(), shuffle_, derive_seed(seed_, static_cast<uint64_t>(epoch)));
  order_ = torch::tensor(order, torch::kInt64);
}

int64_t BatchLoader::num_batches() const {
  const int64_t n = dataset_.size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

Batch BatchLoader::get(int64_t index) const {
  const int64_t begin = index * batch_size_;
  const int64_t count = std::min(batch_size_, dataset_.size() - begin);
  Batch batch = dataset_.batch(order_.narrow(0, begin, count));
  if (!augmentation_.enabled()) return batch;
  // Per-batch generator: batch `index` of epoch `epoch_` is augmented the same way on every run.
  auto generator = at::detail::createCPUGenerator(derive_seed(
      derive_seed(seed_ ^ 0xA5A5A5A5ULL, static_cast<uint64_t>(epoch_)), static_cast<uint64_t>(index)));
  torch::Tensor x = batch.images;
  const int64_t h = x.size(2);
  const int64_t w = x.size(3);
  if (augmentation_.flip) {
    const torch::Tensor flip = at::rand({count}, generator) < 0.5;
    x = torch::where(flip.view({count, 1, 1, 1}), x.flip({3}), x);
  }
  if (augmentation_.pad > 0) {
    const int64_t pad = augmentation_.pad;
    // Zero padding in normalised space equals padding with the mean colour.
    torch::Tensor padded = torch::constant_pad_nd(x, {pad, pad, pad, pad}, 0.0);
    const torch::Tensor offsets = at::randint(0, 2 * pad + 1, {count, 2}, generator);
    const auto acc = offsets.accessor<int64_t, 2>();
    torch::Tensor out = torch::empty_like(x);
    for (int64_t i = 0; i < count; ++i) {
      out[i].copy_(padded[i].narrow(1, acc[i][0], h).narrow(2, acc[i][1], w));
    }
    x = out;
  }
  batch.images = x;
  return batch;
}

}  // namespace rdprune
