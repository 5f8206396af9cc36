#include <cmath>
#include <deque>

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/progress.h"
#include "rdprune/train.h"

namespace rdprune {

void validate(const TrainOptions& options, const std::string& lr_option) {
  if (options.epochs < 0) throw UsageError("epochs", "expected a count >= 0");
  if (options.steps < 0) throw UsageError("steps", "expected a count >= 0");
  if (options.epochs == 0 && options.steps == 0) throw UsageError("steps", "give epochs or steps > 0");
  validate_optimizer(options, lr_option);
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
    const Batch batch = loader.get(step % per_epoch);
    last_images = batch.images;
    for (auto& group : optimizer->param_groups())
      group.options().set_lr(learning_rate_at(options, step, total));
    optimizer->zero_grad();
    const torch::Tensor logits = network.forward(batch.images.to(device));
    const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, batch.labels.to(device));
    loss.backward();
    network.mask_gradients();
    optimizer->step();
    network.count_train_step();
    network.apply_masks();

    const double value = loss.item<double>();
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
  if (last_images.defined()) {
    torch::NoGradGuard no_grad;
    if (!torch::isfinite(network.forward(last_images.to(device))).all().item<bool>()) {
      throw Error(fmt::format(
          "training diverged: the outputs are not finite after step {} (try a lower learning rate)",
          total - 1));
    }
  }
  result.steps = total;
  result.epochs = static_cast<double>(total) / static_cast<double>(per_epoch);
  result.final_loss = recent.empty() ? 0.0 : recent_sum / static_cast<double>(recent.size());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace rdprune
