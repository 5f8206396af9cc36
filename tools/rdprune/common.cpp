#include "common.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include <torch/torch.h>

#include <fmt/ranges.h>

#include "rdprune/allocator.h"
#include "rdprune/baselines.h"
#include "rdprune/criterion.h"
#include "rdprune/error.h"
#include "rdprune/text.h"

namespace rdprune::cli {

void add_common_flags(CLI::App& command, CommonFlags& flags) {
  command.add_flag("--json", flags.json, "Print one JSON object on stdout; progress stays on stderr");
  command
      .add_option_function<std::string>(
          "--threads",
          [&flags](const std::string& text) {
            const int64_t threads = parse_count(text, "--threads");
            if (threads > 4096) throw UsageError("--threads: expected a count in [0, 4096], got " + text);
            flags.threads = static_cast<int>(threads);
          },
          "CPU threads (default: all cores)")
      ->type_name("INT");
}

void add_optimizer_flags(CLI::App& command, TrainOptions& options) {
  command.add_option("--steps", options.steps, "Optimizer steps")->capture_default_str();
  command.add_option("--batch-size", options.batch_size, "Batch size")->capture_default_str();
  command.add_option("--optimizer", options.optimizer, "sgd|adamw")->capture_default_str();
  command.add_option("--lr", options.lr, "Peak learning rate")->capture_default_str();
  command.add_option("--momentum", options.momentum, "SGD momentum")->capture_default_str();
  command.add_option("--weight-decay", options.weight_decay, "Weight decay")->capture_default_str();
  command.add_option("--schedule", options.schedule, "cosine|constant")->capture_default_str();
  command.add_option("--warmup", options.warmup_fraction, "Linear warm-up fraction of the steps")
      ->capture_default_str();
  add_seed_option(command, options.seed, "Seed for order and augmentation");
}

CLI::Option* add_seed_option(CLI::App& command, uint64_t& seed, const std::string& description) {
  return command
      .add_option_function<std::string>(
          "--seed", [&seed](const std::string& text) { seed = parse_seed(text, "--seed"); }, description)
      ->type_name("UINT")
      ->default_str(std::to_string(seed));
}

void add_curve_flags(CLI::App& command, CurveOptions& options, const std::string& scope) {
  command.add_option("--levels", options.levels,
                     scope + "curve grid steps from 0 to 1 (default 100: 101 points)");
  command.add_flag_callback(
      "--no-tail", [&options] { options.tail = false; },
      scope + "no geometric tail of levels between 1 - 1/steps and one kept weight (the paper's grid)");
  command.add_option(
      "--estimator", options.estimator,
      scope + "measured (forward passes, default) | taylor (second-order estimates from one gradient pass)");
  command.add_option("--metric", options.metric,
                     scope + "distortion mse|worst|kl (default " + options.metric + ")");
  command.add_flag("--plain", options.plain,
                   scope + "measure curves with a full forward per layer and level (no suffix execution)");
  command.add_option("--max-memory", options.max_memory_mib,
                     scope + "MiB of cached activations for suffix execution (default 0: no limit)");
  command.add_option("--level-batch", options.level_batch,
                     scope + "levels whose stages after the layer's own run as one batch (default 1)");
}

void add_data_flags(CLI::App& command, DataFlags& flags, bool dataset_required) {
  auto* dataset = command.add_option("--dataset", flags.dataset,
                                     "fashion-mnist|mnist|cifar10|cifar100|imagefolder|synthetic|tensors");
  if (dataset_required) dataset->required();
  command.add_option("--data-dir", flags.data_dir,
                     "Directory of the dataset's files (default: the dataset's own); tensors: a torch.save "
                     "file or a directory of train.pt/test.pt");
  command.add_option("--mean", flags.mean, "Per-channel normalisation mean, e.g. 0.286 or 0.49,0.48,0.45");
  command.add_option("--std", flags.std, "Per-channel normalisation std");
  command
      .add_option("--image-size", flags.image_size,
                  "imagefolder: resize images to this square size (default 32)")
      ->check(CLI::Range(1, 4096));
  command.add_option("--channels", flags.channels, "imagefolder: 1 or 3 channels (default 3)");
  command.add_option("--input-shape", flags.input_shape, "synthetic: sample shape C,H,W (default 1,28,28)");
  command
      .add_option("--num-classes", flags.num_classes,
                  "synthetic: number of classes (default 10); tensors: (default: largest label + 1)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  command.add_option("--synthetic-size", flags.synthetic_size, "synthetic: samples per split (default 1024)");
}

void add_dist_flags(CLI::App& command, DistFlags& flags) {
  command.add_option("--dist-timeout", flags.timeout,
                     "Under torchrun: seconds to wait for the other processes, at the start and at every "
                     "exchange (default 300)");
}

void add_bn_stats_flag(CLI::App& command, std::string& bn_stats) {
  command.add_option("--bn-stats", bn_stats,
                     "Under torchrun: batch-norm running statistics averaged over the processes after "
                     "every step (mean, default) or rank 0's (rank0)");
}

std::unique_ptr<ProcessGroup> join_processes(const DistFlags& flags) {
  if (!(flags.timeout > 0)) throw UsageError("--dist-timeout: expected a positive number of seconds");
  return std::make_unique<ProcessGroup>(place_from_environment(), flags.timeout);
}

void apply_threads(const CommonFlags& flags) {
  const int threads =
      flags.threads > 0 ? flags.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
}

DatasetOptions dataset_options(const DataFlags& flags, const ModelMeta* model) {
  DatasetOptions options;
  options.name = flags.dataset;
  options.data_dir = flags.data_dir;
  if (!flags.mean.empty()) options.mean = parse_doubles(flags.mean, "--mean");
  if (!flags.std.empty()) options.std = parse_doubles(flags.std, "--std");
  if (model && model->dataset == flags.dataset) {
    if (options.mean.empty()) options.mean = model->normalization.mean;
    if (options.std.empty()) options.std = model->normalization.std;
  }
  if (flags.image_size < 0) throw UsageError("--image-size: expected a positive size");
  options.image_size = flags.image_size;
  options.channels = flags.channels;
  if (!flags.input_shape.empty()) {
    options.input_shape = parse_shape(flags.input_shape, "--input-shape");
  }
  if (flags.num_classes < 0) throw UsageError("--num-classes: expected a positive count");
  options.num_classes = flags.num_classes;
  // A tensors file counts its classes from its largest label, which a small file may not hold;
  // a checkpoint knows how many it was trained with.
  if (model) options.model_classes = model->num_classes;
  if (flags.synthetic_size <= 0) throw UsageError("--synthetic-size: expected a positive count");
  options.synthetic_size = flags.synthetic_size;
  options.seed = flags.seed;
  return options;
}

void add_load_flags(CLI::App& command, LoadOptions& options) {
  command.add_flag("--prune-embeddings", options.prune_embeddings,
                   "Embedding tables and position embeddings are prunable layers too (default: dense, "
                   "as norms and biases)");
  add_device_flag(command, options.device);
}

std::unique_ptr<Network> load_model(const std::string& path, const LoadOptions& options) {
  return load_network(path, options);
}

void check_model_fits(Network& network, const Dataset& data, const std::string& path) {
  try {
    const auto& meta = network.meta();
    const auto shape = data.sample_shape();
    if (!meta.input_shape.empty() && meta.input_shape != shape) {
      throw Error("model takes " + format_shape(meta.input_shape) + " inputs but " + data.description() +
                  " has " + format_shape(shape) + " samples");
    }
    if (meta.num_classes > 0 && meta.num_classes != data.num_classes()) {
      throw Error("model has " + std::to_string(meta.num_classes) + " classes but " + data.description() +
                  " has " + std::to_string(data.num_classes()));
    }
    check_logits(network, shape, data.num_classes());
  } catch (const Error& e) {
    std::string message = e.what();
    if (data.description().rfind("tensors ", 0) == 0 && message.find(" classes but ") != std::string::npos)
      message += " (a tensors file has --num-classes classes, else its largest label + 1)";
    // Errors from a TorchScript forward name the file already.
    throw Error(path.empty() ? message : naming_file(path, message));
  }
}

std::string naming_file(const std::string& path, const std::string& message) {
  return message.rfind(path + ": ", 0) == 0 ? message : path + ": " + message;
}

Sink* stderr_sink() {
  static StreamSink sink(std::cerr, ::isatty(STDERR_FILENO) == 1);
  return &sink;
}

void require_prunable_layers(const Network& network, const std::string& path) {
  if (network.layers().empty()) {
    throw Error(path +
                ": model has no prunable layers (no weight matrix that a convolution, linear or "
                "matrix product reads)");
  }
}

Dataset calibration_images(const DataFlags& flags, const Network& network, int64_t size,
                           std::string& description) {
  if (size <= 0) throw UsageError("--calib-size: expected a positive count");
  const DatasetSplits splits = load_dataset(dataset_options(flags, &network.meta()));
  Dataset calibration = splits.train.head(size);
  description = fmt::format("{} train[0:{}]", flags.dataset, calibration.size());
  if (!flags.data_dir.empty()) description += " from " + flags.data_dir;
  return calibration;
}

void use_criterion(Network& network, const std::string& name, const Dataset* calibration,
                   const std::string& why) {
  check_criterion(name);
  if (name != "wanda") return network.set_criterion(name);
  if (calibration == nullptr) throw UsageError("--criterion", "wanda needs calibration images: " + why);
  network.set_criterion(name, input_feature_norms(network, *calibration, 256));
}

void add_method_flags(CLI::App& command, AllocatorSettings& settings) {
  command.add_option("--criterion", settings.criterion,
                     "Which weights of a layer go first, for every method: magnitude (|w|, default) | "
                     "wanda (|w| times its input's norm on the calibration images, within each output row)");
  command.add_option("--owl-threshold", settings.owl.threshold,
                     "owl: a weight is an outlier above M times its layer's mean score (default 5)");
  command.add_option("--owl-lambda", settings.owl.lambda,
                     "owl: layer sparsities within +-lambda of the target (default 0.08)");
  command.add_option(
      "--alpha-epsilon", settings.alpha.epsilon,
      "alphapruning: layer sparsities within a factor 1 +- epsilon of the target (default 0.3)");
  command.add_option("--alpha-fit", settings.alpha.fit,
                     "alphapruning: xmin of the power-law fit: peak (default) | median");
}

void add_preset_flag(CLI::App& command, std::string& preset) {
  command.add_option("--preset", preset,
                     "rd, select: default (KL distortion, a geometric tail of levels, 4 refinement "
                     "passes) | paper (Xu et al. 2023: mse, uniform levels, no refinement); the flags "
                     "given win over it");
}

void apply_preset(const CLI::App& command, const std::string& preset, CurveOptions& curves, int64_t* refine) {
  const AllocatorSettings values = preset_settings(preset);
  const auto given = [&](const std::string& flag) {
    const CLI::Option* option = command.get_option_no_throw(flag);
    return option != nullptr && option->count() > 0;
  };
  if (!given("--metric")) curves.metric = values.curves.metric;
  if (!given("--no-tail")) curves.tail = values.curves.tail;
  if (!given("--bn-aware-curves") && !given("--bn-aware"))
    curves.recalibrate_bn = values.curves.recalibrate_bn;
  if (refine != nullptr && !given("--refine")) *refine = values.refine;
}

void emit(const CommonFlags& flags, const nlohmann::json& result, const std::string& human) {
  if (flags.json) {
    std::cout << result.dump() << std::endl;
  } else {
    std::cout << human << std::flush;
  }
}

nlohmann::json finite_or_null(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json();
}

namespace {

// `path` made absolute with its links and dots resolved as far as it exists; empty when it cannot be.
std::filesystem::path resolved(const std::string& path) {
  std::error_code error;
  const auto result = std::filesystem::weakly_canonical(std::filesystem::absolute(path), error);
  return error ? std::filesystem::path() : result;
}

// Whether two paths name one file: the same file when both exist (links, "./x" and "x"), else
// the same location once resolved.
bool same_file(const std::string& a, const std::string& b) {
  std::error_code error;
  if (std::filesystem::equivalent(a, b, error)) return true;
  const auto resolved_a = resolved(a);
  return !resolved_a.empty() && resolved_a == resolved(b);
}

// Whether `output` is an existing file inside the directory `input` (a dataset's directory).
bool file_inside(const std::string& output, const std::string& input) {
  std::error_code error;
  if (!std::filesystem::is_directory(input, error) || !std::filesystem::is_regular_file(output, error))
    return false;
  const auto file = resolved(output);
  const auto root = resolved(input);
  return !file.empty() && !root.empty() &&
         std::mismatch(root.begin(), root.end(), file.begin(), file.end()).first == root.end();
}

}  // namespace

void check_outputs_distinct(const std::vector<PathFlag>& inputs, const std::vector<PathFlag>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const PathFlag& output = outputs[i];
    if (output.path.empty()) continue;
    for (const PathFlag& input : inputs) {
      if (!input.path.empty() && same_file(output.path, input.path))
        throw UsageError(output.flag + ": " + output.path + " is the " + input.flag +
                         " file; writing it would destroy the input");
      if (!input.path.empty() && file_inside(output.path, input.path))
        throw UsageError(output.flag + ": " + output.path + " is a file of the " + input.flag +
                         " directory; writing it would destroy the input");
    }
    for (size_t j = 0; j < i; ++j) {
      if (!outputs[j].path.empty() && same_file(output.path, outputs[j].path))
        throw UsageError(output.flag + ": " + output.path + " is also " + outputs[j].flag +
                         "; give each output its own file");
    }
  }
}

void require_range(const std::string& flag, double value, double low, double high) {
  if (!(value >= low && value <= high)) {
    throw UsageError(flag + ": " + std::to_string(value) + " is outside [" + std::to_string(low) + ", " +
                     std::to_string(high) + "]");
  }
}

std::string default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/rdprune";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/rdprune";
  return (std::filesystem::temp_directory_path() / "rdprune-cache").string();
}

}  // namespace rdprune::cli
