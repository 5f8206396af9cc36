#include <cmath>
#include <deque>

#include <fmt/format.h>
#include <torch/torch.h>

#include "gradient_sum.h"
#include "rdprune/error.h"
#include "rdprune/process_group.h"
#include "rdprune/progress.h"
#include "rdprune/train.h"

namespace rdprune {

void validate(const TrainOptions& options, const std::string& lr_option) {
  if (options.epochs < 0) throw UsageError("epochs", "expected a count >= 0");
  if (options.steps < 0) throw UsageError("steps", "expected a count >= 0");
  if (options.epochs == 0 && options.steps == 0) throw UsageError("steps", "give epochs or steps > 0");
  validate_optimizer(options, lr_option);
  if (options.bn_stats != "mean" && options.bn_stats != "rank0")
    throw UsageError("bn_stats", "expected mean or rank0, got '" + options.bn_stats + "'");
  if (options.group != nullptr && options.batch_size < options.group->size()) {
    throw UsageError("batch_size", "expected at least one sample per process (" +
                                       std::to_string(options.group->size()) + " processes)");
  }
}

void validate_optimizer(const TrainOptions& options, const std::string& lr_option) {
  if (options.batch_size <= 0) throw UsageError("batch_size", "expected a positive count");
  if (options.optimizer != "sgd" && options.optimizer != "adamw") {
    throw UsageError("optimizer", "expected sgd or adamw, got '" + options.optimizer + "'");
  }
  if (options.schedule != "cosine" && options.schedule != "constant") {
    throw UsageError("schedule", "expected cosine or constant, got '" + options.schedule + "'");
  }
  if (!(options.lr > 0) || !std::isfinite(options.lr))
    throw UsageError(lr_option, "expected a positive number");
  if (!(options.momentum >= 0 && options.momentum < 1))
    throw UsageError("momentum", "expected a value in [0, 1)");
  if (!(options.weight_decay >= 0) || !std::isfinite(options.weight_decay)) {
    throw UsageError("weight_decay", "expected a number >= 0");
  }
  if (!(options.warmup_fraction >= 0 && options.warmup_fraction < 1)) {
    throw UsageError("warmup_fraction", "expected a fraction in [0, 1)");
  }
}

double learning_rate_at(const TrainOptions& options, int64_t step, int64_t total) {
  const auto warmup = static_cast<int64_t>(options.warmup_fraction * static_cast<double>(total));
  if (step < warmup) return options.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (options.schedule == "constant") return options.lr;
  const double span = static_cast<double>(std::max<int64_t>(total - warmup, 1));
  const double t = static_cast<double>(step - warmup) / span;
  return 0.5 * options.lr * (1.0 + std::cos(M_PI * t));
}

namespace {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(Network& network, const TrainOptions& options) {
  if (options.optimizer == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        network.parameters(), torch::optim::AdamWOptions(options.lr).weight_decay(options.weight_decay));
  }
  return std::make_unique<torch::optim::SGD>(
      network.parameters(),
      torch::optim::SGDOptions(options.lr).momentum(options.momentum).weight_decay(options.weight_decay));
}

bool several(const TrainOptions& options) {
  return options.group != nullptr && options.group->size() > 1;
}

// This process's part of `batch`: the whole batch alone, its shard over several processes.
Batch part_of(const Batch& batch, const TrainOptions& options) {
  if (!several(options)) return batch;
  const auto [begin, end] = shard_of(batch.labels.size(0), options.group->rank(), options.group->size());
  return {batch.images.narrow(0, begin, end - begin), batch.labels.narrow(0, begin, end - begin)};
}

// Makes every process's batch-norm running statistics the same after a step: their mean, or rank
// 0's. One sum of them all, flattened.
void share_buffers(Network& network, const TrainOptions& options) {
  if (!several(options)) return;
  ProcessGroup& group = *options.group;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> buffers;
  for (const torch::Tensor& buffer : network.buffers())
    if (buffer.is_floating_point()) buffers.push_back(buffer);  // counts are the same everywhere
  if (buffers.empty()) return;
  std::vector<torch::Tensor> flat;
  for (const torch::Tensor& buffer : buffers)
    flat.push_back(buffer.detach().reshape({-1}).to(torch::kCPU, torch::kFloat64));
  torch::Tensor mine = torch::cat(flat);
  if (options.bn_stats == "rank0" && !group.is_root()) mine.zero_();
  torch::Tensor shared = group.sum(mine);
  if (options.bn_stats == "mean") shared /= group.size();
  int64_t offset = 0;
  for (torch::Tensor& buffer : buffers) {
    buffer.copy_(shared.narrow(0, offset, buffer.numel()).view(buffer.sizes()));
    offset += buffer.numel();
  }
}

// One step's forward and backward on `batch`, this process's part of `whole` samples; the
// gradients and the returned loss are those of the mean loss over the whole batch.
double step_loss(Network& network, const Batch& batch, int64_t whole, const torch::Device& device,
                 const TrainOptions& options, GradientSum* gradients) {
  namespace F = torch::nn::functional;
  if (gradients == nullptr) {
    const torch::Tensor loss =
        F::cross_entropy(network.forward(batch.images.to(device)), batch.labels.to(device));
    loss.backward();
    return loss.item<double>();
  }
  torch::Tensor total = torch::zeros({1}, torch::kFloat64);
  if (batch.labels.size(0) > 0) {
    const torch::Tensor loss =
        F::cross_entropy(network.forward(batch.images.to(device)), batch.labels.to(device),
                         F::CrossEntropyFuncOptions().reduction(torch::kSum)) /
        static_cast<double>(whole);
    total += loss.detach().to(torch::kCPU, torch::kFloat64);
    const auto summed = options.group->start_sum(total);
    loss.backward();
    gradients->finish();
    summed();
  } else {
    options.group->start_sum(total)();
    gradients->finish();
  }
  return total.item<double>();
}

}  // namespace

TrainResult train(Network& network, const Dataset& data, const TrainOptions& options) {
  validate(options);
  if (data.size() == 0) throw Error(data.description() + ": no training samples");
  const auto device =
      network.layers().empty() ? torch::Device(torch::kCPU) : network.layers()[0].weight.device();
  // drop_last keeps every batch full (batch norm dislikes a batch of one) unless the set is tiny.
  BatchLoader loader(data, options.batch_size, /*shuffle=*/true, options.seed, options.augmentation,
                     /*drop_last=*/data.size() >= options.batch_size);
  const int64_t per_epoch = loader.num_batches();
  const int64_t total = options.steps > 0 ? options.steps : options.epochs * per_epoch;
  auto optimizer = make_optimizer(network, options);
  std::unique_ptr<GradientSum> gradients;
  if (several(options)) gradients = std::make_unique<GradientSum>(network.parameters(), *options.group);
  const torch::AutoGradMode with_gradients(true);  // also when a caller holds a NoGradGuard
  network.set_training(true);
  network.apply_masks();

  TrainResult result;
  torch::Tensor last_images;
  std::deque<double> recent;
  double recent_sum = 0;
  Progress progress("train", total, options.sink);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < total; ++step) {
    const int64_t epoch = step / per_epoch;
    if (step % per_epoch == 0) loader.set_epoch(epoch);
    const Batch whole = loader.get(step % per_epoch);
    const Batch batch = part_of(whole, options);
    last_images = batch.images;
    for (auto& group : optimizer->param_groups())
      group.options().set_lr(learning_rate_at(options, step, total));
    optimizer->zero_grad();
    const double value = step_loss(network, batch, whole.labels.size(0), device, options, gradients.get());
    network.mask_gradients();
    optimizer->step();
    network.count_train_step();
    network.apply_masks();
    share_buffers(network, options);

    if (!std::isfinite(value) && step == 0) {
      // Measured before the first update: the model's own outputs, not the learning rate.
      throw Error(fmt::format("the loss is {} before any update: the model's outputs on {} are not finite",
                              value, data.description()));
    }
    if (!std::isfinite(value)) {
      throw Error(
          fmt::format("training diverged: loss is {} at step {} (try a lower learning rate)", value, step));
    }
    recent.push_back(value);
    recent_sum += value;
    if (recent.size() > 50) {
      recent_sum -= recent.front();
      recent.pop_front();
    }
    progress.advance(1, fmt::format("epoch {} loss {:.4f}", epoch + 1, recent_sum / recent.size()));
  }
  progress.finish();
  network.set_training(false);
  // Each loss is measured before its step's update: what the last update left is checked here, on
  // the last batch.
  // Over several processes each checks its part of the batch and they agree, so all stop together.
  double unfinite = 0;
  if (last_images.defined() && last_images.size(0) > 0) {
    torch::NoGradGuard no_grad;
    unfinite = torch::isfinite(network.forward(last_images.to(device))).all().item<bool>() ? 0 : 1;
  }
  if (several(options))
    unfinite = options.group->sum(torch::tensor({unfinite}, torch::kFloat64)).item<double>();
  if (unfinite > 0) {
    throw Error(
        fmt::format("training diverged: the outputs are not finite after step {} (try a lower learning rate)",
                    total - 1));
  }
  result.steps = total;
  result.epochs = static_cast<double>(total) / static_cast<double>(per_epoch);
  result.final_loss = recent.empty() ? 0.0 : recent_sum / static_cast<double>(recent.size());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace rdprune
