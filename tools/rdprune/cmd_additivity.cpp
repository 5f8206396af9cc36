// rdprune additivity --model M --dataset D --out-dir DIR: joint against summed distortion.
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "rdprune/additivity.h"
#include "rdprune/atomic_file.h"
#include "rdprune/distortion.h"
#include "rdprune/error.h"
#include "rdprune/report.h"
#include "rdprune/text.h"

namespace rdprune::cli {
namespace fs = std::filesystem;
namespace {

struct AdditivityFlags {
  CommonFlags common;
  LoadOptions load;
  DataFlags data;
  CurveOptions curves;
  std::string model;
  std::string curves_file;
  std::string out_dir;
  std::string sparsities = "0.5,0.7,0.8,0.9,0.95,0.98";
  int64_t calib_size = 256;
  int64_t random = 30;
  std::string preset = "default";
};

void run_additivity(const CLI::App& command, AdditivityFlags& flags) {
  apply_threads(flags.common);
  apply_preset(command, flags.preset, flags.curves);
  flags.curves.sink = stderr_sink();
  validate(flags.curves);
  const auto sparsities = parse_doubles(flags.sparsities, "--sparsities");
  for (double s : sparsities) check_sparsity_target(s, "--sparsities");
  require_distinct(sparsities, "--sparsities");
  if (flags.random < 0) throw UsageError("--random: expected a count >= 0");
  if (flags.calib_size <= 0) throw UsageError("--calib-size: expected a positive count");
  if (fs::exists(flags.out_dir) && !fs::is_directory(flags.out_dir)) {
    throw UsageError("--out-dir: " + flags.out_dir + " exists and is not a directory");
  }
  auto network = load_model(flags.model, flags.load);
  require_prunable_layers(*network, flags.model);
  const DatasetSplits splits = load_dataset(dataset_options(flags.data, &network->meta()));
  const Dataset calibration = splits.train.head(flags.calib_size);
  check_model_fits(*network, calibration, flags.model);
  fs::create_directories(flags.out_dir);
  CurveSet curves;
  if (!flags.curves_file.empty()) {
    curves = curves_from_json(read_file(flags.curves_file), flags.curves_file);
    if (curves.fingerprint != fingerprint(*network)) {
      throw Error(flags.curves_file + ": curves were measured on another model (fingerprint differs)");
    }
  } else {
    flags.curves.cache_dir = (fs::path(flags.out_dir) / "cache").string();
    curves = measure_curves(*network, calibration,
                            fmt::format("{} train[0:{}]", flags.data.dataset, calibration.size()),
                            layer_census(*network, calibration.sample_shape()), flags.curves);
    write_file_atomic((fs::path(flags.out_dir) / "curves.json").string(), to_json(curves));
  }
  const auto points = additivity_study(*network, calibration, curves, sparsities, flags.random,
                                       flags.data.seed, flags.curves.batch_size);
  std::vector<double> predicted;
  std::vector<double> measured;
  std::vector<double> log_predicted;
  std::vector<double> log_measured;
  std::vector<std::string> kinds;
  std::string csv = "kind,sparsity,predicted,measured\n";
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& p : points) {
    predicted.push_back(p.predicted);
    measured.push_back(p.measured);
    kinds.push_back(p.kind);
    if (p.predicted > 0 && p.measured > 0) {
      log_predicted.push_back(std::log(p.predicted));
      log_measured.push_back(std::log(p.measured));
    }
    csv += fmt::format("{},{:.6f},{:.9g},{:.9g}\n", p.kind, p.sparsity, p.predicted, p.measured);
    rows.push_back(
        {{"kind", p.kind}, {"sparsity", p.sparsity}, {"predicted", p.predicted}, {"measured", p.measured}});
  }
  write_file_atomic((fs::path(flags.out_dir) / "additivity.csv").string(), csv);
  const double r = pearson(predicted, measured);
  const double r_log = pearson(log_predicted, log_measured);
  plot_additivity(flags.out_dir, predicted, measured, kinds,
                  fmt::format("Additivity: Pearson r = {:.3f} (log-log {:.3f})", r, r_log));
  const nlohmann::json json = {{"pearson", finite_or_null(r)},
                               {"pearson_log", finite_or_null(r_log)},
                               {"points", rows},
                               {"out_dir", flags.out_dir}};
  write_file_atomic((fs::path(flags.out_dir) / "additivity.json").string(), json.dump(1) + "\n");
  std::string human =
      fmt::format("{} points; Pearson r of measured vs summed distortion {:.4f}, log-log {:.4f}\n",
                  points.size(), r, r_log);
  for (const auto& p : points) {
    human += fmt::format("  {:<7} sparsity {:.4f}  sum {:.6g}  measured {:.6g}\n", p.kind, p.sparsity,
                         p.predicted, p.measured);
  }
  const bool drawn = std::filesystem::exists(std::filesystem::path(flags.out_dir) / "additivity.png");
  human += std::string("wrote additivity.csv, additivity.json") + (drawn ? " and additivity.png" : "") +
           " to " + flags.out_dir + "\n";
  emit(flags.common, json, human);
}

}  // namespace

void register_additivity(CLI::App& app) {
  auto flags = std::make_shared<AdditivityFlags>();
  auto* command =
      app.add_subcommand("additivity", "Joint distortion of pruning all layers against the summed curves");
  command->add_option("--model", flags->model, "rdprune checkpoint or TorchScript file")->required();
  command->add_option("--out-dir", flags->out_dir, "Directory for the table, the plot and the curves")
      ->required();
  command->add_option("--curves", flags->curves_file, "Curves of this model (default: measure them)");
  command->add_option("--sparsities", flags->sparsities, "rd plans at these targets (default 0.5,...,0.98)");
  command->add_option("--random", flags->random, "Random allocations to measure (default 30)");
  command->add_option("--calib-size", flags->calib_size, "Calibration samples (default 256)");
  add_preset_flag(*command, flags->preset);
  add_curve_flags(*command, flags->curves, "");
  add_seed_option(*command, flags->data.seed, "Seed of the random allocations (default 0)");
  add_common_flags(*command, flags->common);
  add_load_flags(*command, flags->load);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([command, flags] { run_additivity(*command, *flags); });
}

}  // namespace rdprune::cli
