// rdprune eval --model M --dataset D: top-1, top-5, loss, samples; per-image outcomes and a paired
// comparison with a second model on request.
#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/hits.h"
#include "rdprune/train.h"

namespace rdprune::cli {
namespace {

struct EvalFlags {
  CommonFlags common;
  DistFlags dist;
  LoadOptions load;
  DataFlags data;
  std::string model;
  std::string against;
  std::string hits;
  std::string split = "test";
  int64_t limit = 0;
  int64_t batch_size = 256;
};

// The evaluated part of a split.
Dataset evaluated_part(const DatasetSplits& splits, const EvalFlags& flags) {
  const Dataset& full = flags.split == "test" ? splits.test : splits.train;
  return flags.limit > 0 ? full.head(flags.limit) : full;
}

nlohmann::json figures(const std::string& model, const EvalResult& eval) {
  return {{"model", model}, {"top1", eval.top1}, {"top5", eval.top5}, {"loss", eval.loss}};
}

// NaN logits leave top-1 to whatever the ranking makes of them: no measurement at all. (An
// infinite logit ranks, as a model that masks classes with -inf means it to.)
void require_finite(const EvalResult& result, const std::string& model, const Dataset& data) {
  if (result.nan_outputs > 0) {
    throw Error(
        fmt::format("{}: outputs NaN logits for {} of {} images of {} (a damaged model, or a "
                    "--mean/--std it cannot take)",
                    model, result.nan_outputs, result.samples, data.description()));
  }
}

void run_eval(const EvalFlags& flags) {
  apply_threads(flags.common);
  if (flags.limit < 0) throw UsageError("--limit: expected a count >= 0");
  if (flags.batch_size <= 0) throw UsageError("--batch-size: expected a positive count");
  if (flags.split != "test" && flags.split != "train") throw UsageError("--split: expected test or train");
  if (!flags.hits.empty()) {
    check_output_path(flags.hits);
    // A command that only reads models and data never writes over them.
    check_outputs_distinct(
        {{"--model", flags.model}, {"--against", flags.against}, {"--data-dir", flags.data.data_dir}},
        {{"--hits", flags.hits}});
  }
  const auto group = join_processes(flags.dist);
  Sink* sink = group->is_root() ? stderr_sink() : nullptr;
  auto network = load_model(flags.model, flags.load);
  std::unique_ptr<Network> other = flags.against.empty() ? nullptr : load_model(flags.against, flags.load);
  // Each model reads the images with its own recorded normalisation unless the flags give one; both
  // are checked against them before either is evaluated.
  const DatasetOptions options = dataset_options(flags.data, &network->meta());
  const Dataset data = evaluated_part(load_dataset(options), flags);
  check_model_fits(*network, data, flags.model);
  Dataset their_data = data;
  if (other) {
    const DatasetOptions their_options = dataset_options(flags.data, &other->meta());
    if (their_options.mean != options.mean || their_options.std != options.std)
      their_data = evaluated_part(load_dataset(their_options), flags);
    check_model_fits(*other, their_data, flags.against);
  }
  // Under torchrun each process evaluates its part of the images; rank 0 alone reports and writes.
  const EvalResult eval = evaluate(*network, data, flags.batch_size, sink, group.get());
  require_finite(eval, flags.model, data);
  nlohmann::json result = {{"model", flags.model},    {"dataset", flags.data.dataset},
                           {"split", flags.split},    {"top1", eval.top1},
                           {"top5", eval.top5},       {"loss", eval.loss},
                           {"samples", eval.samples}, {"seconds", eval.seconds}};
  std::string text =
      fmt::format("{} on {}: top-1 {:.2f}%, top-5 {:.2f}%, loss {:.4f}, {} samples\n", flags.model,
                  data.description(), 100 * eval.top1, 100 * eval.top5, eval.loss, eval.samples);
  if (other) {
    const EvalResult theirs = evaluate(*other, their_data, flags.batch_size, sink, group.get());
    require_finite(theirs, flags.against, their_data);
    const PairedDifference paired = paired_difference(eval.hits, theirs.hits);
    result["against"] = figures(flags.against, theirs);
    result["difference"] = paired.difference;
    result["difference_se"] = paired.standard_error;
    text += fmt::format("{}: top-1 {:.2f}%, top-5 {:.2f}%, loss {:.4f}\n", flags.against, 100 * theirs.top1,
                        100 * theirs.top5, theirs.loss);
    text += fmt::format("top-1 difference {:+.2f} ± {:.2f} points (paired over the same {} images)\n",
                        100 * paired.difference, 100 * paired.standard_error, eval.samples);
  }
  if (!group->is_root()) return;
  if (!flags.hits.empty()) {
    write_file_atomic(flags.hits, hits_to_text(eval.hits));
    result["hits"] = flags.hits;
  }
  emit(flags.common, result, text);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto flags = std::make_shared<EvalFlags>();
  auto* command = app.add_subcommand("eval", "Evaluate a model: top-1, top-5, mean loss");
  command->add_option("--model", flags->model, "rdprune checkpoint or TorchScript file")->required();
  command->add_option("--split", flags->split, "test|train (default test)");
  command->add_option("--limit", flags->limit, "Evaluate the first N samples only");
  command->add_option("--batch-size", flags->batch_size, "Batch size (default 256)");
  command->add_option("--against", flags->against,
                      "A second model, evaluated on the same images: the top-1 difference and its paired "
                      "standard error");
  command->add_option("--hits", flags->hits,
                      "Write which images --model classifies correctly to this file (rdprune.hits/1)");
  add_common_flags(*command, flags->common);
  add_dist_flags(*command, flags->dist);
  add_load_flags(*command, flags->load);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags] { run_eval(*flags); });
}

}  // namespace rdprune::cli
