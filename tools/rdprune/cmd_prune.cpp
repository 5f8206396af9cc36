// rdprune prune --model M --plan P --out M2: masks per the plan (by its criterion), saved with the model.
#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "rdprune/atomic_file.h"
#include "rdprune/channels.h"
#include "rdprune/error.h"
#include "rdprune/masks.h"

namespace rdprune::cli {
namespace {

struct PruneFlags {
  CommonFlags common;
  LoadOptions load;
  DataFlags data;
  int64_t calib_size = 256;
  std::string model;
  std::string plan;
  std::string out;
  std::string export_dense;
  bool allow_empty = false;
};

// A channel plan: the plan's channels masked, then removed: the model written is physically
// smaller (docs/channels.md).
void prune_channels(const PruneFlags& flags, const Plan& plan, Network& network) {
  if (!flags.export_dense.empty())
    throw UsageError("--export-dense", "a channel plan's --out is already the deployment model");
  apply_channel_plan(network, plan, flags.plan);
  const auto smaller = remove_pruned_channels(network);
  smaller->save(flags.out);
  // The plan's cost model gives the smaller network's exact weights and FLOPs (a test checks this).
  const auto weights_after = static_cast<double>(plan.kept_weights());
  const double removed = plan.sparsity_achieved();
  const double flops_removed = plan.flops_sparsity_achieved();
  nlohmann::json result = {{"model", flags.out},
                           {"format", smaller->format()},
                           {"method", plan.method},
                           {"granularity", "channel"},
                           {"sparsity_target", plan.sparsity_target},
                           {"weights", weights_after},
                           {"weights_removed", removed},
                           {"flops_removed", flops_removed},
                           {"widths", smaller->meta().widths}};
  emit(flags.common, result,
       fmt::format("pruned {} by {} channel plan {}: {:.4f} of weights and {:.4f} of FLOPs removed (target "
                   "{:.4f} of {}); wrote the smaller model {}\n",
                   flags.model, plan.method, flags.plan, removed, flops_removed, plan.sparsity_target,
                   to_string(plan.budget), flags.out));
}

void run_prune(const PruneFlags& flags) {
  apply_threads(flags.common);
  check_output_path(flags.out);
  if (!flags.export_dense.empty()) check_output_path(flags.export_dense);
  // --out may be --model: the model is read whole first and replaced atomically.
  check_outputs_distinct({{"--plan", flags.plan}},
                         {{"--out", flags.out}, {"--export-dense", flags.export_dense}});
  const Plan plan = plan_from_json(read_file(flags.plan), flags.plan);
  auto network = load_model(flags.model, flags.load);
  if (plan.granularity == "channel") return prune_channels(flags, plan, *network);
  // A wanda plan prunes by the inputs' norms on the calibration images the plan was made with.
  if (plan.criterion == "wanda") {
    std::string description;
    const Dataset calibration = calibration_images(flags.data, *network, flags.calib_size, description);
    check_model_fits(*network, calibration, flags.model);
    use_criterion(*network, plan.criterion, &calibration, "");
  }
  // Sparsity only: a census without the input shape runs no forward pass.
  check_no_layer_emptied(plan, layer_census(*network, {}), flags.allow_empty, flags.plan);
  apply_plan(*network, plan, flags.plan);
  network->save(flags.out);
  if (!flags.export_dense.empty()) network->save_dense(flags.export_dense);
  const auto infos = layer_census(*network, network->meta().input_shape);
  int64_t total = 0;
  int64_t pruned = 0;
  for (const auto& info : infos) {
    total += info.weights;
    pruned += static_cast<int64_t>(std::llround(info.sparsity * static_cast<double>(info.weights)));
  }
  const double sparsity = total > 0 ? static_cast<double>(pruned) / static_cast<double>(total) : 0.0;
  nlohmann::json result = {{"model", flags.out},
                           {"format", network->format()},
                           {"method", plan.method},
                           {"sparsity_target", plan.sparsity_target},
                           {"sparsity_achieved", sparsity}};
  if (!flags.export_dense.empty()) result["export_dense"] = flags.export_dense;
  emit(flags.common, result,
       fmt::format("pruned {} by {} plan {}: sparsity {:.4f} (target {:.4f}); wrote {} ({})\n", flags.model,
                   plan.method, flags.plan, sparsity, plan.sparsity_target, flags.out, network->format()));
}

}  // namespace

void register_prune(CLI::App& app) {
  auto flags = std::make_shared<PruneFlags>();
  auto* command = app.add_subcommand(
      "prune", "Prune a model to a plan, by the plan's criterion; masks are saved with it");
  command->add_option("--model", flags->model, "rdprune checkpoint or TorchScript file")->required();
  command->add_option("--plan", flags->plan, "Plan file from `rdprune allocate`")->required();
  command->add_option("--out", flags->out, "Output model, in the input's format")->required();
  command->add_option("--export-dense", flags->export_dense,
                      "Also write a deployment copy without masks (pruned weights stay zero)");
  command->add_flag("--allow-empty", flags->allow_empty,
                    "Apply a plan that leaves a layer no weights (plans made with --allow-empty need not)");
  command->add_option("--calib-size", flags->calib_size,
                      "A wanda plan: the calibration images it was made with, the first N training images "
                      "(default 256)");
  add_common_flags(*command, flags->common);
  add_load_flags(*command, flags->load);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags] { run_prune(*flags); });
}

}  // namespace rdprune::cli
