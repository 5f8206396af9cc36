// Datasets behind one interface: images held in memory as they are stored (uint8 for image
// datasets, float for synthetic), normalised per batch, in a deterministic order for a seed.
// Calibration and evaluation never augment; training may (random crop with padding, flips).
#pragma once

#include "rdprune/layering.h"

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

namespace rdprune {

RDPRUNE_LAYER(1, "data");

struct Normalization {
  std::vector<double> mean;  // one entry per channel, or one for all channels
  std::vector<double> std;   // same length as `mean`, every entry > 0
};

struct DatasetOptions {
  std::string name = "fashion-mnist";  // fashion-mnist|mnist|cifar10|cifar100|imagefolder|synthetic|tensors
  std::string data_dir;                // empty: the dataset's default directory
  std::vector<double> mean;            // empty: the dataset's default
  std::vector<double> std;             // empty: the dataset's default
  int64_t image_size = 0;              // imagefolder: side of the square images (default 32)
  int64_t channels = 0;                // imagefolder: 1 or 3 (default 3)
  std::vector<int64_t> input_shape;    // synthetic: C,H,W (default 1,28,28)
  int64_t num_classes = 0;             // synthetic: number of classes (default 10)
  int64_t model_classes = 0;           // tensors: the model's class count, taken when the labels fit
  int64_t synthetic_size = 1024;       // synthetic: samples per split
  uint64_t seed = 0;                   // synthetic: generator seed
};

// Training-time augmentation, applied per batch with a seeded generator.
struct Augmentation {
  int64_t pad = 0;    // random crop after zero-padding by `pad` pixels; 0 = off
  bool flip = false;  // random horizontal flip
  bool enabled() const { return pad > 0 || flip; }
};

struct Batch {
  torch::Tensor images;  // float [B, C, H, W], normalised
  torch::Tensor labels;  // int64 [B]
};

class Dataset {
 public:
  Dataset() = default;
  // `images`: uint8 or float [N, C, H, W]; `labels`: int64 [N] in [0, num_classes).
  Dataset(torch::Tensor images, torch::Tensor labels, int64_t num_classes, Normalization normalization,
          std::string description);
  // The same samples under another normalisation.
  Dataset(const Dataset& other, Normalization normalization);

  int64_t size() const { return labels_.defined() ? labels_.size(0) : 0; }
  int64_t num_classes() const { return num_classes_; }
  std::vector<int64_t> sample_shape() const;  // C, H, W
  const Normalization& normalization() const { return normalization_; }
  const std::string& description() const { return description_; }

  // Samples `indices` (int64 [B]) normalised, unaugmented.
  Batch batch(const torch::Tensor& indices) const;
  // The first `n` samples (all if n >= size()): the calibration and `--limit` subset.
  Dataset head(int64_t n) const;
  // Samples [begin, begin + n), clipped to the split (empty when begin >= size()).
  Dataset slice(int64_t begin, int64_t n) const;
  // A hash of the samples, labels, classes and normalisation (16 hex digits): what a run's results
  // depend on, wherever the files came from. Computed once (every cell of a compare asks).
  const std::string& fingerprint() const;

 private:
  torch::Tensor images_;
  torch::Tensor labels_;
  int64_t num_classes_ = 0;
  Normalization normalization_;
  std::string description_;
  mutable std::string fingerprint_;  // empty until fingerprint() is first asked
  torch::Tensor mean_;               // [1, C or 1, 1, 1] float
  torch::Tensor std_;
};

struct DatasetSplits {
  Dataset train;
  Dataset test;
};

// Names accepted by --dataset.
const std::vector<std::string>& dataset_names();
// The default augmentation for training on a dataset (none for synthetic and tensors).
Augmentation default_augmentation(const std::string& dataset_name);
// Loads both splits. Throws UsageError for an unknown name or bad option values and Error for
// missing, truncated or inconsistent files.
DatasetSplits load_dataset(const DatasetOptions& options);

// Iterates a dataset in batches: shuffled by `seed` when `shuffle` (a new order per epoch via
// `epoch`), augmented when `augmentation` is enabled. Batch i of an epoch is a pure function of
// (seed, epoch, i), so runs are reproducible.
class BatchLoader {
 public:
  BatchLoader(const Dataset& dataset, int64_t batch_size, bool shuffle, uint64_t seed,
              Augmentation augmentation = {}, bool drop_last = false);
  void set_epoch(int64_t epoch);
  int64_t num_batches() const;
  Batch get(int64_t index) const;

 private:
  const Dataset& dataset_;
  int64_t batch_size_;
  bool shuffle_;
  uint64_t seed_;
  Augmentation augmentation_;
  bool drop_last_;
  int64_t epoch_ = 0;
  torch::Tensor order_;
};

// Readers of the on-disk formats, exposed for tests.
// IDX (LeCun et al.): big-endian magic 0x000008dd (dd = rank), dims, uint8 data; gzip or raw.
torch::Tensor read_idx(const std::string& path);
// CIFAR binary batches: records of `label_bytes` label bytes then 3072 pixel bytes. The label used
// is the last label byte (CIFAR-100: the fine label). Returns images [N,3,32,32] and labels [N].
std::pair<torch::Tensor, torch::Tensor> read_cifar_records(const std::vector<std::string>& paths,
                                                           int64_t label_bytes);
// A dict {"x": images [N,C,H,W] or [N,H,W] (uint8 or float), "y": int labels [N]} written by
// torch.save. Returns images (uint8 kept, others as float32) and int64 labels.
std::pair<torch::Tensor, torch::Tensor> read_tensor_file(const std::string& path);
// root/<class>/*.png|jpg|jpeg|bmp, classes sorted by name. Images resized to size x size.
std::pair<torch::Tensor, torch::Tensor> read_image_folder(const std::string& root, int64_t size,
                                                          int64_t channels,
                                                          std::vector<std::string>* class_names);

}  // namespace rdprune
