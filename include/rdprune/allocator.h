// Allocators: how a method chooses every layer's sparsity (docs/design.md, "Allocators"). rd, the
// baselines and select plug in behind one interface and are made from their name in one place,
// make_allocator. The schedule (rdprune/pipeline.h) calls allocate once per round.
#pragma once

#include "rdprune/layering.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rdprune/allocate.h"
#include "rdprune/dataset.h"
#include "rdprune/distortion.h"
#include "rdprune/layerwise_rules.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"
#include "rdprune/refine.h"
#include "rdprune/sink.h"
#include "rdprune/train.h"

namespace rdprune {

RDPRUNE_LAYER(4, "alloc");

// select: the search from several plans (docs/design.md, "select").
struct SelectSettings {
  std::vector<std::string> pool = {"rd", "global", "lamp", "erk"};  // the methods whose plans start it
  // Fine-tuning steps every plan gets before it is judged; 0: judged as pruned.
  int64_t recovery_steps = 0;
  std::string judge_by = "distortion";  // distortion | loss | error
  // Training images after the calibration ones (or the held-out ones) that plans are judged on;
  // 0: the calibration images (judged by distortion only).
  int64_t judge_size = 0;
  // Rounds of exchanges between every ordered pair of layers after the refinement passes.
  int64_t exchanges = 0;
};

// Everything that decides what an allocator returns, resolved: no value means "decide later".
struct AllocatorSettings {
  CurveOptions curves;  // rd, select: how curves are measured
  int64_t refine = 4;   // rd: passes around rd's own plan; select: around the best start
  SelectSettings select;
  OwlOptions owl;
  AlphaOptions alpha;
  // Which weights of a layer go first, for every method, curves and prune (rdprune/criterion.h).
  std::string criterion = "magnitude";
  // weight: plans of kept weights per layer; channel: kept channels per channel group, every
  // round's model physically smaller (docs/channels.md). Channel methods: rd, uniform, global,
  // slimming; rd measures channel curves and does no refinement passes.
  std::string granularity = "weight";
};

// The settings a preset expands to: "default" (what measures best, docs/results.md) or "paper"
// (Xu et al. 2023: mse, uniform levels, no refinement). Throws UsageError naming "preset".
AllocatorSettings preset_settings(const std::string& preset);
const std::vector<std::string>& preset_names();

void validate(const AllocatorSettings& settings);

// What an allocator works on in one round.
struct AllocatorContext {
  explicit AllocatorContext(Network& on) : network(on) {}
  Network& network;
  std::vector<LayerInfo> layers;  // the census of the network as it is
  const Dataset* calibration = nullptr;
  std::string calibration_description;
  // Joint distortions with batch statistics: batch norm will be re-estimated after pruning, or the
  // curves are batch-norm aware. Decided once, by the schedule.
  bool batch_statistics = false;
  // select's recovery: fine-tuning data, images to judge on (the first judge_size of them), this
  // round's fine-tuning options (optimizer, seed) and whether batch norm is re-estimated.
  const Dataset* tuning = nullptr;
  const Dataset* judging = nullptr;
  TrainOptions finetune;
  bool recalibrate_bn = false;
  Sink* sink = nullptr;
  // Channel plans: the cost model to allocate under (latency tables measured); null: the network's
  // weights and FLOPs.
  const ChannelCostModel* channel_costs = nullptr;
  // Sees the curves an allocator measures: "curves", then "curves-refine-<pass>".
  std::function<void(const std::string& name, const CurveSet&)> save_curves;
};

struct Allocation {
  Plan plan;
  std::vector<RefineStep> steps;  // every plan judged by refinement or select, the chosen one marked
  // select, when its recovery ran the round's whole fine-tuning: the network it left for the chosen
  // plan, so the schedule need not fine-tune it again.
  std::optional<NetworkState> recovered;
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual std::string name() const = 0;
  // The plan for `budget` (its target, kind and constraints) on the network as `context` holds it.
  virtual Allocation allocate(AllocatorContext& context, const RdOptions& budget) = 0;
};

// The one place a method's name becomes an allocator, of the settings' granularity. Throws
// UsageError naming "method".
std::unique_ptr<Allocator> make_allocator(const std::string& method, const AllocatorSettings& settings);
// rd, select, the baselines, owl and alphapruning.
const std::vector<std::string>& allocator_names();
// The methods that make channel plans: rd, uniform, global, slimming.
const std::vector<std::string>& channel_allocator_names();
// Whether `method` measures anything on calibration images (rd, select, owl).
bool uses_calibration(const std::string& method);

}  // namespace rdprune
