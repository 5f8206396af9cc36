// rdprune finetune --model M --dataset D --steps N --out M2: training with the masks held.
#include <iostream>

#include <fmt/format.h>
#include <torch/torch.h>

#include "commands.h"
#include "common.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/train.h"

namespace rdprune::cli {
namespace {

struct FinetuneFlags {
  CommonFlags common;
  DistFlags dist;
  LoadOptions load;
  DataFlags data;
  TrainOptions train;
  std::string model;
  std::string out;
  bool bn_recalibrate = false;
  int64_t calib_size = 1024;
  int64_t eval_limit = 0;
  bool no_augment = false;
};

void run_finetune(FinetuneFlags& flags) {
  apply_threads(flags.common);
  if (flags.train.steps == 0 && !flags.bn_recalibrate)
    throw UsageError("--steps: give a step count > 0 (or --bn-recalibrate)");
  if (flags.train.steps != 0) {
    validate(flags.train);
  } else {
    validate_optimizer(flags.train);  // --bn-recalibrate alone: unused, but a bad value is an error
  }
  if (flags.calib_size <= 0) throw UsageError("--calib-size: expected a positive count");
  check_output_path(flags.out);
  // --out may be --model: the model is read whole first and replaced atomically.
  check_outputs_distinct({{"--data-dir", flags.data.data_dir}}, {{"--out", flags.out}});
  const auto group = join_processes(flags.dist);
  flags.train.group = group.get();
  Sink* sink = group->is_root() ? stderr_sink() : nullptr;
  flags.train.sink = sink;
  auto network = load_model(flags.model, flags.load);
  const DatasetSplits splits = load_dataset(dataset_options(flags.data, &network->meta()));
  check_model_fits(*network, splits.train, flags.model);
  flags.train.augmentation = flags.no_augment ? Augmentation{} : default_augmentation(flags.data.dataset);
  bool recalibrated = false;
  if (flags.bn_recalibrate)
    recalibrated = recalibrate_batch_norm(*network, splits.train.head(flags.calib_size));
  TrainResult trained;
  if (flags.train.steps > 0) trained = train(*network, splits.train, flags.train);
  const Dataset test = flags.eval_limit > 0 ? splits.test.head(flags.eval_limit) : splits.test;
  const EvalResult eval = evaluate(*network, test, 256, sink, group.get());
  if (!group->is_root()) return;
  network->save(flags.out);
  const nlohmann::json result = {{"model", flags.out},
                                 {"steps", trained.steps},
                                 {"train_seconds", trained.seconds},
                                 {"train_loss", trained.final_loss},
                                 {"bn_recalibrated", recalibrated},
                                 {"top1", eval.top1},
                                 {"top5", eval.top5},
                                 {"loss", eval.loss},
                                 {"samples", eval.samples}};
  emit(flags.common, result,
       fmt::format("fine-tuned {} for {} steps{}: top-1 {:.2f}%, top-5 {:.2f}%, loss {:.4f}; saved {}\n",
                   flags.model, trained.steps, recalibrated ? " after batch-norm recalibration" : "",
                   100 * eval.top1, 100 * eval.top5, eval.loss, flags.out));
}

}  // namespace

void register_finetune(CLI::App& app) {
  auto flags = std::make_shared<FinetuneFlags>();
  flags->train.lr = 0.01;
  auto* command = app.add_subcommand("finetune", "Fine-tune a pruned model with its masks held");
  command->add_option("--model", flags->model, "rdprune checkpoint or TorchScript file")->required();
  command->add_option("--out", flags->out, "Output model, in the input's format")->required();
  add_optimizer_flags(*command, flags->train);
  command->add_flag("--no-augment", flags->no_augment, "Fine-tune without crop/flip augmentation");
  command->add_flag("--bn-recalibrate", flags->bn_recalibrate, "Re-estimate batch-norm statistics first");
  command->add_option("--calib-size", flags->calib_size, "Samples for --bn-recalibrate (default 1024)");
  command->add_option("--eval-limit", flags->eval_limit, "Evaluate on the first N test samples only");
  add_common_flags(*command, flags->common);
  add_load_flags(*command, flags->load);
  add_dist_flags(*command, flags->dist);
  add_bn_stats_flag(*command, flags->train.bn_stats);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags] { run_finetune(*flags); });
}

}  // namespace rdprune::cli
