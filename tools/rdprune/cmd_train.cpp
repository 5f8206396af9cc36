// rdprune train --arch A --dataset D --epochs E --out M: train a zoo model from scratch.
#include <iostream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "commands.h"
#include "common.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/train.h"

namespace rdprune::cli {
namespace {

struct TrainFlags {
  CommonFlags common;
  DistFlags dist;
  torch::Device device = torch::kCPU;
  DataFlags data;
  TrainOptions train;
  std::string arch;
  std::string out;
  int64_t train_limit = 0;
  int64_t eval_limit = 0;
  bool no_augment = false;
};

void run_train(TrainFlags& flags) {
  apply_threads(flags.common);
  check_output_path(flags.out);
  check_outputs_distinct({{"--data-dir", flags.data.data_dir}}, {{"--out", flags.out}});
  validate(flags.train);
  if (flags.train_limit < 0 || flags.eval_limit < 0)
    throw UsageError("--train-limit/--eval-limit: expected a count >= 0");
  const DatasetOptions data_options = dataset_options(flags.data);
  // Check the architecture before the (slow) dataset load.
  const auto& archs = zoo_architectures();
  if (std::find(archs.begin(), archs.end(), flags.arch) == archs.end()) {
    throw UsageError("--arch: unknown architecture '" + flags.arch +
                     "' (known: " + fmt::format("{}", fmt::join(archs, ", ")) + ")");
  }
  const auto group = join_processes(flags.dist);
  flags.train.group = group.get();
  Sink* sink = group->is_root() ? stderr_sink() : nullptr;
  DatasetSplits splits = load_dataset(data_options);
  Dataset train_set = flags.train_limit > 0 ? splits.train.head(flags.train_limit) : splits.train;
  Dataset test_set = flags.eval_limit > 0 ? splits.test.head(flags.eval_limit) : splits.test;

  ModelMeta meta;
  meta.arch = flags.arch;
  meta.input_shape = train_set.sample_shape();
  meta.num_classes = train_set.num_classes();
  meta.dataset = data_options.name;
  meta.normalization = train_set.normalization();
  torch::manual_seed(flags.train.seed);
  auto network = create_network(meta);
  network->to(flags.device);
  flags.train.augmentation = flags.no_augment ? Augmentation{} : default_augmentation(data_options.name);
  if (group->is_root()) {
    std::cerr << fmt::format("training {} on {} ({} samples, {} threads{})\n", flags.arch,
                             train_set.description(), train_set.size(), torch::get_num_threads(),
                             group->size() > 1 ? fmt::format(", {} processes", group->size()) : "");
  }
  flags.train.sink = sink;
  const TrainResult trained = train(*network, train_set, flags.train);
  const EvalResult eval = evaluate(*network, test_set, 256, sink, group.get());
  if (!group->is_root()) return;
  network->save(flags.out);

  const nlohmann::json result = {{"model", flags.out},
                                 {"arch", flags.arch},
                                 {"dataset", data_options.name},
                                 {"epochs", trained.epochs},
                                 {"steps", trained.steps},
                                 {"train_seconds", trained.seconds},
                                 {"train_loss", trained.final_loss},
                                 {"top1", eval.top1},
                                 {"top5", eval.top5},
                                 {"loss", eval.loss},
                                 {"samples", eval.samples},
                                 {"seed", flags.train.seed}};
  emit(flags.common, result,
       fmt::format("trained {} for {} steps ({:.2f} epochs) in {:.1f}s; test top-1 {:.2f}%, top-5 {:.2f}%, "
                   "loss {:.4f} on {} samples; saved {}\n",
                   flags.arch, trained.steps, trained.epochs, trained.seconds, 100 * eval.top1,
                   100 * eval.top5, eval.loss, eval.samples, flags.out));
}

}  // namespace

void register_train(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  auto* command = app.add_subcommand("train", "Train a zoo model from scratch and evaluate it");
  command
      ->add_option("--arch", flags->arch, "mlp|lenet5|resnet20|resnet32|resnet56|vgg16|resnet18|resnet50|vit")
      ->required();
  command->add_option("--out", flags->out, "Output checkpoint")->required();
  auto* epochs =
      command->add_option("--epochs", flags->train.epochs, "Passes over the training set (or --steps)");
  add_optimizer_flags(*command, flags->train);
  epochs->excludes(command->get_option("--steps"));  // one length, not two that disagree
  command->add_flag("--no-augment", flags->no_augment, "Train without crop/flip augmentation");
  command->add_option("--train-limit", flags->train_limit, "Train on the first N training samples only");
  command->add_option("--eval-limit", flags->eval_limit, "Evaluate on the first N test samples only");
  add_common_flags(*command, flags->common);
  add_device_flag(*command, flags->device);
  add_dist_flags(*command, flags->dist);
  add_bn_stats_flag(*command, flags->train.bn_stats);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags] { run_train(*flags); });
}

}  // namespace rdprune::cli
