// rdprune eval --model M --dataset D: top-1, top-5, loss, samples.
#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "rdprune/error.h"
#include "rdprune/train.h"

namespace rdprune::cli {
namespace {

struct EvalFlags {
  CommonFlags common;
  DataFlags data;
  std::string model;
  std::string split = "test";
  int64_t limit = 0;
  int64_t batch_size = 256;
};

void run_eval(const EvalFlags& flags) {
  apply_threads(flags.common);
  if (flags.limit < 0) throw UsageError("--limit: expected a count >= 0");
  if (flags.batch_size <= 0) throw UsageError("--batch-size: expected a positive count");
  if (flags.split != "test" && flags.split != "train") throw UsageError("--split: expected test or train");
  auto network = load_model(flags.model);
  DatasetSplits splits = load_dataset(dataset_options(flags.data, &network->meta()));
  Dataset& full = flags.split == "test" ? splits.test : splits.train;
  const Dataset data = flags.limit > 0 ? full.head(flags.limit) : full;
  check_model_fits(*network, data);
  const EvalResult eval = evaluate(*network, data, flags.batch_size, /*progress=*/true);
  const nlohmann::json result = {{"model", flags.model},    {"dataset", flags.data.dataset},
                                 {"split", flags.split},    {"top1", eval.top1},
                                 {"top5", eval.top5},       {"loss", eval.loss},
                                 {"samples", eval.samples}, {"seconds", eval.seconds}};
  emit(flags.common, result,
       fmt::format("{} on {}: top-1 {:.2f}%, top-5 {:.2f}%, loss {:.4f}, {} samples\n", flags.model,
                   data.description(), 100 * eval.top1, 100 * eval.top5, eval.loss, eval.samples));
}

}  // namespace

void register_eval(CLI::App& app) {
  auto flags = std::make_shared<EvalFlags>();
  auto* command = app.add_subcommand("eval", "Evaluate a model: top-1, top-5, mean loss");
  command->add_option("--model", flags->model, "rdprune checkpoint or TorchScript file")->required();
  command->add_option("--split", flags->split, "test|train (default test)");
  command->add_option("--limit", flags->limit, "Evaluate the first N samples only");
  command->add_option("--batch-size", flags->batch_size, "Batch size (default 256)");
  add_common_flags(*command, flags->common);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags] { run_eval(*flags); });
}

}  // namespace rdprune::cli
