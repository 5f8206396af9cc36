// rdprune curves --model M --dataset D --out curves.json: per-layer rate-distortion curves.
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "rdprune/atomic_file.h"
#include "rdprune/channels.h"
#include "rdprune/criterion.h"
#include "rdprune/distortion.h"
#include "rdprune/error.h"
#include "rdprune/process_group.h"
#include "rdprune/text.h"

namespace rdprune::cli {
namespace {

struct CurvesFlags {
  CommonFlags common;
  DistFlags dist;
  LoadOptions load;
  DataFlags data;
  CurveOptions curves;
  std::string model;
  std::string out;
  int64_t calib_size = 256;
  bool synthetic = false;
  bool no_cache = false;
  std::string preset = "default";
  std::string criterion = "magnitude";
  std::string granularity = "weight";
};

// What channel curves do not take (docs/channels.md): weight criteria, batch-norm awareness, more
// than one process.
void check_channel_settings(const CurvesFlags& flags, const ProcessGroup& group) {
  if (flags.criterion != "magnitude")
    throw UsageError("--criterion", "channel curves rank channels by L1 norm; --criterion is for weights");
  if (flags.curves.estimator != "measured")
    throw UsageError("--estimator", "channel curves are measured; the Taylor estimate is for weights");
  if (flags.curves.level_batch != 1)
    throw UsageError("--level-batch", "channel curves run one level at a time");
  if (group.size() > 1)
    throw UsageError("--granularity", "channel curves run in one process in this version");
}

void run_curves(const CLI::App& command, CurvesFlags& flags) {
  apply_threads(flags.common);
  apply_preset(command, flags.preset, flags.curves);
  // Under torchrun the processes measure the layers in turns; rank 0 alone reports and writes.
  const auto group = join_processes(flags.dist);
  flags.curves.group = group.get();
  flags.curves.sink = group->is_root() ? stderr_sink() : nullptr;
  validate(flags.curves);
  if (flags.calib_size <= 0) throw UsageError("--calib-size: expected a positive count");
  check_criterion(flags.criterion);
  require_one_of("--granularity", flags.granularity, {"weight", "channel"}, "granularity");
  const bool channel = flags.granularity == "channel";
  if (channel) check_channel_settings(flags, *group);
  check_output_path(flags.out);
  check_outputs_distinct({{"--model", flags.model}, {"--data-dir", flags.data.data_dir}},
                         {{"--out", flags.out}});
  auto network = load_model(flags.model, flags.load);
  require_prunable_layers(*network, flags.model);

  Dataset calibration;
  std::string description;
  if (flags.synthetic) {
    // Zero-data mode: N(0, 1) inputs of the model's input shape.
    DataFlags synthetic = flags.data;
    synthetic.dataset = "synthetic";
    synthetic.synthetic_size = flags.calib_size;
    synthetic.channels = 0;  // the model's input shape decides
    synthetic.image_size = 0;
    if (synthetic.input_shape.empty()) {
      const auto& shape = network->meta().input_shape;
      if (shape.empty())
        throw UsageError("--input-shape: the model does not record its input shape; pass C,H,W");
      synthetic.input_shape = fmt::format("{},{},{}", shape[0], shape[1], shape[2]);
    }
    calibration = load_dataset(dataset_options(synthetic)).train;
    description = fmt::format("synthetic N(0,1) {}x{} seed {}", flags.calib_size,
                              format_shape(calibration.sample_shape()), flags.data.seed);
  } else {
    calibration = calibration_images(flags.data, *network, flags.calib_size, description);
  }
  check_model_fits(*network, calibration, flags.model);
  use_criterion(*network, flags.criterion, flags.synthetic ? nullptr : &calibration,
                "--synthetic inputs say nothing of real activations");
  const auto infos = layer_census(*network, calibration.sample_shape());
  flags.curves.cache_dir =
      flags.no_cache ? "" : (flags.curves.cache_dir.empty() ? default_cache_dir() : flags.curves.cache_dir);
  const auto start = std::chrono::steady_clock::now();
  const CurveSet curves =
      channel ? measure_channel_curves(*network, calibration, description, infos, flags.curves)
              : measure_curves(*network, calibration, description, infos, flags.curves);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!group->is_root()) return;
  write_file_atomic(flags.out, to_json(curves));

  int64_t points = 0;
  for (const auto& layer : curves.layers) points += static_cast<int64_t>(layer.sparsity.size());
  const nlohmann::json result = {{"curves", flags.out},
                                 {"layers", curves.layers.size()},
                                 {"points", points},
                                 {"metric", curves.metric},
                                 {"calibration", description},
                                 {"fingerprint", curves.fingerprint},
                                 {"granularity", curves.granularity},
                                 {"preset", flags.preset},
                                 {"levels", flags.curves.levels},
                                 {"tail", flags.curves.tail},
                                 {"bn_aware", flags.curves.recalibrate_bn},
                                 {"seconds", seconds},
                                 {"stages", network->num_stages()}};
  emit(flags.common, result,
       fmt::format("wrote {}: {} layers, {} points, metric {}, calibration {} ({:.1f}s)\n", flags.out,
                   curves.layers.size(), points, curves.metric, description, seconds));
}

}  // namespace

void register_curves(CLI::App& app) {
  auto flags = std::make_shared<CurvesFlags>();
  auto* command = app.add_subcommand("curves", "Measure per-layer rate-distortion curves");
  command->add_option("--model", flags->model, "rdprune checkpoint or TorchScript file")->required();
  command->add_option("--out", flags->out, "Output curves file (rdprune.curves/1 JSON)")->required();
  command->add_option("--calib-size", flags->calib_size,
                      "Calibration samples: the first N training images (default 256)");
  add_preset_flag(*command, flags->preset);
  add_curve_flags(*command, flags->curves, "");
  command->add_option("--granularity", flags->granularity,
                      "weight (default): a curve per layer | channel: a curve per channel group (zoo and "
                      "TorchScript models)");
  command->add_option("--criterion", flags->criterion,
                      "Which weights of a layer each level prunes: magnitude (default) | wanda");
  command->add_flag("--synthetic", flags->synthetic,
                    "Zero-data mode: N(0,1) inputs of the model's input shape");
  add_seed_option(*command, flags->data.seed, "Seed of the synthetic inputs (default 0)");
  command->add_option("--batch-size", flags->curves.batch_size,
                      "Calibration samples per forward pass (default 256)");
  command->add_option("--cache-dir", flags->curves.cache_dir, "Curve cache (default ~/.cache/rdprune)");
  command->add_flag("--no-cache", flags->no_cache, "Neither read nor write the curve cache");
  command->add_flag("--bn-aware", flags->curves.recalibrate_bn,
                    "Re-estimate batch-norm statistics at every level before measuring (zoo models)");
  add_common_flags(*command, flags->common);
  add_dist_flags(*command, flags->dist);
  add_load_flags(*command, flags->load);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([command, flags] { run_curves(*command, *flags); });
}

}  // namespace rdprune::cli
