// rdprune allocate --method rd --curves C --sparsity S --out plan.json
#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "rdprune/allocate.h"
#include "rdprune/allocator.h"
#include "rdprune/atomic_file.h"
#include "rdprune/channel_allocate.h"
#include "rdprune/channels.h"
#include "rdprune/distortion.h"
#include "rdprune/error.h"
#include "rdprune/latency.h"
#include "rdprune/text.h"

namespace rdprune::cli {
namespace {

struct AllocateFlags {
  CommonFlags common;
  LoadOptions load;
  DataFlags data;
  AllocatorSettings settings;
  int64_t calib_size = 256;
  RdOptions rd;
  std::string method = "rd";
  std::string curves;
  std::string model;
  std::string budget = "params";
  std::string keep_dense;
  std::string out;
  std::string frontier;
  std::string granularity;  // empty: the curves' (rd), else weight
  double sparsity = -1;
  LatencyOptions latency;  // --budget latency
  bool no_cache = false;
  std::string cache_dir;
};

// The cost model a channel plan is made under: the curves' or the model's, with latency tables
// measured on this machine (or read from the cache) under a latency budget.
ChannelCostModel channel_costs(const AllocateFlags& flags, const CurveSet* curves, Network* network) {
  // --input-shape (a data flag): C,H,W for FLOPs and latency when the model does not record it
  // (TorchScript).
  if (network != nullptr && !flags.data.input_shape.empty())
    network->meta().input_shape = parse_shape(flags.data.input_shape, "--input-shape");
  if (network != nullptr && network->meta().input_shape.empty() && flags.rd.budget != BudgetKind::kParams)
    throw UsageError("--input-shape: a " + to_string(flags.rd.budget) +
                     " budget needs the model's input shape (C,H,W)");
  ChannelCostModel model =
      curves != nullptr
          ? curves->channel_costs
          : channel_cost_model(channel_groups(*network), layer_census(*network, network->meta().input_shape));
  if (flags.rd.budget == BudgetKind::kLatency) {
    LatencyOptions latency = flags.latency;
    latency.cache_dir =
        flags.no_cache ? "" : (flags.cache_dir.empty() ? default_cache_dir() : flags.cache_dir);
    latency.sink = stderr_sink();
    measure_latency(*network, model, latency);
  }
  return model;
}

// A channel plan (docs/channels.md): rd from channel curves, or a rule on the model: uniform,
// global ranking, network slimming.
Plan allocate_channels(AllocateFlags& flags, const CurveSet* curves) {
  if (!flags.frontier.empty()) throw UsageError("--frontier", "is not built for channel plans");
  if (flags.rd.solver != "dp") throw UsageError("--solver", "channel plans are solved by dp");
  if (flags.rd.allow_empty) throw UsageError("--allow-empty", "a channel group keeps at least one channel");
  if (curves == nullptr && flags.method == "rd") throw UsageError("--curves: required for --method rd");
  const bool latency = flags.rd.budget == BudgetKind::kLatency;
  std::unique_ptr<Network> network;
  if (curves == nullptr || latency) {
    if (flags.model.empty())
      throw UsageError("--model: required for --method " + flags.method +
                       (latency ? " under a latency budget" : ""));
    network = load_model(flags.model, flags.load);
  }
  const ChannelCostModel model = channel_costs(flags, curves, network.get());
  if (curves != nullptr) {
    CurveSet priced = *curves;
    priced.channel_costs = model;
    return allocate_channels_rd(priced, flags.rd);
  }
  AllocatorSettings settings = flags.settings;
  settings.granularity = "channel";
  AllocatorContext context(*network);
  context.channel_costs = &model;
  return make_allocator(flags.method, settings)->allocate(context, flags.rd).plan;
}

void write_frontier(const std::string& path, const std::vector<FrontierPoint>& frontier, BudgetKind budget) {
  std::string text =
      fmt::format("kept_{},sparsity,distortion\n", budget == BudgetKind::kParams ? "weights" : "flops");
  for (const auto& point : frontier)
    text += fmt::format("{:.17g},{:.17g},{:.17g}\n", point.budget, point.sparsity, point.distortion);
  write_file_atomic(path, text);
}

void run_allocate(AllocateFlags& flags) {
  apply_threads(flags.common);
  require_one_of("--granularity", flags.granularity.empty() ? "weight" : flags.granularity,
                 {"weight", "channel"}, "granularity");
  // Every allocator but select, which judges plans by fine-tuning: a run's work. Channel plans have
  // their own rules (docs/channels.md).
  std::vector<std::string> known = allocator_names();
  known.erase(std::remove(known.begin(), known.end(), "select"), known.end());
  if (flags.granularity == "channel") known = channel_allocator_names();
  require_one_of("--method", flags.method, known, "method");
  if (flags.granularity == "channel") flags.settings.granularity = "channel";
  validate(flags.settings);
  const bool baseline = flags.method != "rd";
  flags.rd.budget = parse_budget(flags.budget);
  flags.rd.sparsity_target = flags.sparsity;
  if (!flags.keep_dense.empty()) flags.rd.keep_dense = split_list(flags.keep_dense, "--keep-dense");
  validate(flags.rd);
  check_output_path(flags.out);
  if (!flags.frontier.empty()) check_output_path(flags.frontier);
  check_outputs_distinct({{"--curves", flags.curves}, {"--model", flags.model}},
                         {{"--out", flags.out}, {"--frontier", flags.frontier}});
  std::vector<FrontierPoint> frontier;
  const auto start = std::chrono::steady_clock::now();
  Plan plan;
  if (baseline && flags.granularity == "channel") {
    plan = allocate_channels(flags, nullptr);
  } else if (baseline) {
    if (flags.model.empty()) throw UsageError("--model: required for --method " + flags.method);
    auto network = load_model(flags.model, flags.load);
    std::vector<int64_t> shape = network->meta().input_shape;
    // --input-shape (a data flag): C,H,W for FLOPs when the model does not record it.
    if (!flags.data.input_shape.empty()) shape = parse_shape(flags.data.input_shape, "--input-shape");
    if (shape.empty() && flags.rd.budget == BudgetKind::kFlops) {
      throw UsageError("--input-shape: a FLOPs budget needs the model's input shape (C,H,W)");
    }
    // owl's outlier scores and wanda's order weigh weights by their inputs on calibration images.
    Dataset calibration;
    const bool needs_data = flags.method == "owl" || flags.settings.criterion == "wanda";
    if (needs_data) {
      std::string description;
      calibration = calibration_images(flags.data, *network, flags.calib_size, description);
      check_model_fits(*network, calibration, flags.model);
    }
    use_criterion(*network, flags.settings.criterion, &calibration, "");
    AllocatorContext context(*network);
    context.layers = layer_census(*network, shape);
    context.calibration = needs_data ? &calibration : nullptr;
    plan = make_allocator(flags.method, flags.settings)->allocate(context, flags.rd).plan;
    plan.fingerprint = fingerprint(*network);
    plan.criterion = network->criterion();
  } else {
    if (flags.curves.empty()) throw UsageError("--curves: required for --method rd");
    const CurveSet curves = curves_from_json(read_file(flags.curves), flags.curves);
    if (!flags.granularity.empty() && flags.granularity != curves.granularity) {
      throw UsageError("--granularity", flags.granularity + ": " + flags.curves + " holds " +
                                            curves.granularity +
                                            " curves (`rdprune curves --granularity` decides)");
    }
    plan = curves.granularity == "channel"
               ? allocate_channels(flags, &curves)
               : allocate_rd(curves, flags.rd, flags.frontier.empty() ? nullptr : &frontier);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  write_file_atomic(flags.out, to_json(plan));
  if (!flags.frontier.empty()) write_frontier(flags.frontier, frontier, flags.rd.budget);

  nlohmann::json result = {
      {"plan", flags.out},
      {"method", plan.method},
      {"granularity", plan.granularity},
      {"solver", plan.solver},
      {"budget", to_string(plan.budget)},
      {"sparsity_target", plan.sparsity_target},
      {"sparsity_achieved", plan.sparsity_achieved()},
      {"flops_sparsity_achieved", plan.flops_sparsity_achieved()},
      {"predicted_distortion",
       plan.predicted_distortion ? nlohmann::json(*plan.predicted_distortion) : nlohmann::json()},
      {"seconds", seconds}};
  if (plan.channel_costs.has_latency()) {
    result["latency_sparsity_achieved"] = plan.latency_sparsity_achieved();
    result["dense_latency_seconds"] = plan.dense_latency();
    result["kept_latency_seconds"] = plan.kept_latency();
    result["latency_setting"] = plan.channel_costs.latency_setting;
  }
  std::string human = fmt::format(
      "{} plan ({} budget): target {:.4f}, achieved sparsity {:.4f}, FLOPs sparsity {:.4f}{}\n", plan.method,
      to_string(plan.budget), plan.sparsity_target, plan.sparsity_achieved(), plan.flops_sparsity_achieved(),
      plan.predicted_distortion
          ? fmt::format(", predicted distortion {:.6g} ({} solver)", *plan.predicted_distortion, plan.solver)
          : std::string());
  if (plan.channel_costs.has_latency()) {
    human += fmt::format("  latency {:.4g} ms of {:.4g} ms per batch ({:.4f} removed; {})\n",
                         1e3 * plan.kept_latency(), 1e3 * plan.dense_latency(),
                         plan.latency_sparsity_achieved(), plan.channel_costs.latency_setting);
  }
  const char* unit = plan.granularity == "channel" ? "channels" : "";
  for (const auto& layer : plan.layers) {
    human += fmt::format("  {:<28} {:>9} of {:>9} {} kept  sparsity {:>6}%\n", layer.name, layer.kept,
                         layer.weights, unit, format_percent(layer.sparsity()));
  }
  human += "wrote " + flags.out + (flags.frontier.empty() ? "" : " and " + flags.frontier) + "\n";
  emit(flags.common, result, human);
}

}  // namespace

void register_allocate(CLI::App& app) {
  auto flags = std::make_shared<AllocateFlags>();
  auto* command =
      app.add_subcommand("allocate", "Choose every layer's sparsity under a weight or FLOPs budget");
  command->add_option("--method", flags->method,
                      "rd (default) | global | lamp | uniform | uniform+ | erk | owl | alphapruning; channel "
                      "plans: rd | uniform | global | slimming");
  command->add_option("--curves", flags->curves, "Curves file from `rdprune curves` (method rd)");
  command->add_option("--model", flags->model, "Model (every method but rd)");
  command->add_option(
      "--calib-size", flags->calib_size,
      "owl, --criterion wanda: calibration images, the first N training images (default 256)");
  add_method_flags(*command, flags->settings);
  command
      ->add_option("--sparsity", flags->sparsity,
                   "Target sparsity in [0, 1) of weights (or of FLOPs with --budget flops)")
      ->required();
  command->add_option(
      "--budget", flags->budget,
      "params|flops|latency (default params; latency: channel plans, measured on this machine)");
  command->add_option("--latency-batch", flags->latency.batch_size,
                      "--budget latency: the batch size the model will run at (default 64)");
  command->add_option("--latency-grid", flags->latency.grid,
                      "--budget latency: timed widths per channel group, 1 to all (default 9)");
  command->add_flag("--no-cache", flags->no_cache, "--budget latency: measure the latency tables afresh");
  command->add_option("--cache-dir", flags->cache_dir, "Latency table cache (default ~/.cache/rdprune)");
  command->add_option("--out", flags->out, "Output plan file (rdprune.plan/1 JSON)")->required();
  command->add_option("--min-sparsity", flags->rd.min_sparsity,
                      "Every layer at least this sparse (default 0)");
  command->add_option("--max-sparsity", flags->rd.max_sparsity,
                      "Every layer at most this sparse (default 1)");
  command->add_option("--keep-dense", flags->keep_dense, "Comma-separated layers to leave as they are");
  command->add_flag("--allow-empty", flags->rd.allow_empty, "Allow a layer to lose every weight");
  command->add_option("--solver", flags->rd.solver,
                      "dp (exact, default) | lagrange (slope search, for comparison)");
  command->add_option("--dp-resolution", flags->rd.resolution,
                      "DP budget cells (default 65536; exact when the budget fits)");
  command->add_option("--granularity", flags->granularity,
                      "weight | channel: a channel plan (rd from channel curves; uniform, global or "
                      "slimming from the model); default: the curves' (rd), else weight");
  command->add_option("--frontier", flags->frontier,
                      "Also write the optimal distortion for every budget (CSV)");
  add_common_flags(*command, flags->common);
  add_load_flags(*command, flags->load);
  add_data_flags(*command, flags->data, /*dataset_required=*/false);
  command->callback([flags] { run_allocate(*flags); });
}

}  // namespace rdprune::cli
