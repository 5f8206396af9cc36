// Training (with masks held) and evaluation.
#pragma once

#include "rdprune/layering.h"

#include <cstdint>
#include <string>
#include <vector>

#include "rdprune/dataset.h"
#include "rdprune/network.h"
#include "rdprune/sink.h"

namespace rdprune {

class ProcessGroup;  // rdprune/process_group.h

RDPRUNE_LAYER(3, "train");

struct TrainOptions {
  int64_t epochs = 0;  // passes over the training set; ignored when steps > 0
  int64_t steps = 0;   // optimizer steps; 0 = use epochs
  int64_t batch_size = 128;
  std::string optimizer = "sgd";  // sgd (momentum, weight decay) | adamw
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::string schedule = "cosine";  // cosine | constant
  double warmup_fraction = 0.0;     // linear warm-up over this fraction of the steps
  uint64_t seed = 0;
  Augmentation augmentation;
  Sink* sink = nullptr;  // progress; null: silent
  // Data-parallel training over `group`'s processes (null or one process: alone). Each process
  // takes its part (shard_of) of every batch of `batch_size` samples; the gradients are added up
  // before every step, so every process holds the same model, the one a single process would train
  // on the same batches.
  ProcessGroup* group = nullptr;
  // Batch-norm running statistics over several processes: "mean" averages them over the processes
  // after every step (each process normalises by its own part of the batch); "rank0" keeps rank 0's.
  std::string bn_stats = "mean";
};

// Validates ranges and names; throws UsageError naming the option ("steps", "batch_size", ...).
// `lr_option` names the learning rate in errors (a pipeline's fine-tuning calls it finetune.lr).
void validate(const TrainOptions& options, const std::string& lr_option = "lr");
// The optimizer's settings alone (optimizer, schedule, rates, momentum, decay, warm-up), for
// commands that take them also where they train for no steps: a bad value is an error either way.
void validate_optimizer(const TrainOptions& options, const std::string& lr_option = "lr");

struct TrainResult {
  int64_t steps = 0;
  double epochs = 0;      // steps expressed in passes over the training set
  double final_loss = 0;  // mean training loss over the last 50 steps
  double seconds = 0;
};

// Learning rate at `step` of `total` under `options.schedule` (cosine: Loshchilov & Hutter 2017,
// annealed to 0 at the last step).
double learning_rate_at(const TrainOptions& options, int64_t step, int64_t total);

// Trains `network` on `data`. Masked weights stay exactly zero after every step: their gradients
// are zeroed before the step (so momentum and weight decay never move them) and the masks are
// re-applied after it.
TrainResult train(Network& network, const Dataset& data, const TrainOptions& options);

struct EvalResult {
  double top1 = 0;  // fraction in [0, 1]
  double top5 = 0;  // fraction in [0, 1]; top-k with k = min(5, classes)
  double loss = 0;  // mean cross-entropy
  int64_t samples = 0;
  int64_t nan_outputs = 0;  // samples with a NaN logit: their top-1 and top-5 mean nothing
  double seconds = 0;
  std::vector<uint8_t> hits;  // per sample in dataset order: 1 when top-1 is correct (rdprune/hits.h)
};

// Evaluates in eval mode, unaugmented, in dataset order. Throws Error if the model's output is
// not [batch, classes] logits for the dataset's classes. With a `group` of several processes, each
// evaluates its contiguous part of `data` (shard_of) and every process returns the whole result:
// the counts added up (top-1 and top-5 exactly; the loss's sum in another order) and the outcomes
// joined in dataset order.
EvalResult evaluate(Network& network, const Dataset& data, int64_t batch_size = 256, Sink* sink = nullptr,
                    ProcessGroup* group = nullptr);

}  // namespace rdprune
