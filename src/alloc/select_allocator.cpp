// select: the search from several plans (docs/design.md, "select"). It judges the plans of the
// methods in its pool, moves the best by refinement on rd's curves re-measured around it and by
// exchanges of kept weights between layers, and keeps the plan that judges lowest. Its lead over a
// member of its pool is a best-of-N selection, bought with the judgements it spends.
#include <fmt/format.h>

#include "allocators.h"
#include "rdprune/error.h"
#include "rdprune/recovery.h"

namespace rdprune {
namespace {

// The share of a layer's kept weights an exchange moves at first.
constexpr double kExchangeFraction = 0.25;

class SelectAllocator : public Allocator {
 public:
  explicit SelectAllocator(AllocatorSettings settings) : settings_(std::move(settings)) {}
  std::string name() const override { return "select"; }

  Allocation allocate(AllocatorContext& context, const RdOptions& budget) override {
    if (context.calibration == nullptr) throw Error("select: no calibration images to judge plans on");
    const SelectSettings& s = settings_.select;
    CurveOptions curves = settings_.curves;
    curves.sink = context.sink;
    curves.recalibrate_bn = context.batch_statistics;
    JudgeInfo info;
    info.metric = curves.metric;
    info.recovery_steps = s.recovery_steps;
    // The round's whole fine-tuning judged: the chosen plan's recovered network is kept.
    info.keep_recovered = s.recovery_steps > 0 && s.recovery_steps == context.finetune.steps;
    const Dataset judging = judging_images(context);             // outlives the judge that reads it
    PlanJudge judge_fn = judge(context, curves, judging, info);  // sets what info says it judges by
    PlanSearch search(std::move(judge_fn), info, context.sink);
    AllocatorSettings members = settings_;
    for (const auto& method : s.pool) {
      AllocatorContext quiet = context;
      quiet.save_curves = {};  // the pool's rd measures its own curves; they are not select's
      Plan start = make_allocator(method, members)->allocate(quiet, budget).plan;
      if (!honours(start, context.layers, budget)) {
        note(context.sink, fmt::format("select: {}'s plan breaks the layer limits; not a start", method));
        continue;
      }
      search.judge(method, start);
    }
    if (search.empty()) throw Error("select: no method in the pool gives a plan within the layer limits");
    const int64_t passes = refine_passes(
        search, context.network, *context.calibration, context.calibration_description, context.layers,
        curves, budget, settings_.refine, [&](int64_t pass, const CurveSet& set) {
          if (context.save_curves) context.save_curves("curves-refine-" + std::to_string(pass), set);
        });
    exchange(search, context.layers, budget, passes);
    Allocation allocation;
    allocation.plan = search.best();
    allocation.steps = search.finish();
    allocation.recovered = search.take_recovered();
    return allocation;
  }

 private:
  // The images recovered plans are judged on: the first judge_size judging images, or the
  // calibration images.
  Dataset judging_images(const AllocatorContext& context) const {
    const int64_t size = settings_.select.judge_size;
    if (size == 0) return *context.calibration;
    if (context.judging == nullptr || context.judging->size() == 0)
      throw Error("select: no images left to judge plans on");
    return context.judging->head(std::min(size, context.judging->size()));
  }

  // Joint distortion on the calibration set as pruned, or recovery's judgement on `judging`.
  PlanJudge judge(AllocatorContext& context, const CurveOptions& curves, const Dataset& judging,
                  JudgeInfo& info) const {
    const SelectSettings& s = settings_.select;
    if (s.recovery_steps == 0 && s.judge_size == 0)
      return joint_distortion_judge(context.network, *context.calibration, curves, curves.recalibrate_bn);
    if (s.recovery_steps > 0 && context.tuning == nullptr) throw Error("select: no fine-tuning data");
    info.judged_by = s.judge_by;
    Recovery recovery;
    recovery.steps = s.recovery_steps;
    recovery.data = context.tuning;
    recovery.train = context.finetune;
    recovery.recalibrate_bn = context.recalibrate_bn;
    recovery.judge_by = s.judge_by;
    recovery.metric = curves.metric;
    recovery.batch_size = curves.batch_size;
    return recovery_judge(context.network, *context.calibration, judging, recovery);
  }

  // Rounds of exchanges from the lowest plan so far: for every ordered pair of layers, a share of
  // one layer's kept weights given to the other (halved after a round that finds nothing lower).
  // O(exchanges * layers^2) judgements.
  void exchange(PlanSearch& search, const std::vector<LayerInfo>& layers, const RdOptions& budget,
                int64_t passes) const {
    double fraction = kExchangeFraction;
    const std::string origin = search.best_step().start;
    for (int64_t round = 0; round < settings_.select.exchanges; ++round) {
      const size_t base = search.best_index();
      const Plan from = search.best();
      for (size_t i = 0; i < layers.size(); ++i) {
        for (size_t j = 0; j < layers.size(); ++j) {
          if (i == j) continue;
          Plan candidate;
          try {
            candidate = exchange_plan(from, i, j, fraction, layers, budget);
          } catch (const Error&) {
            continue;  // the constraints cannot meet the budget this way
          }
          if (!honours(candidate, layers, budget) || search.seen(candidate)) continue;
          search.judge(fmt::format("{} {}>{}", origin, layers[i].name, layers[j].name), candidate,
                       passes + 1 + round, 0, fraction);
        }
      }
      if (search.best_index() == base) fraction /= 2;  // nothing lower at this step: a finer one
    }
  }

  AllocatorSettings settings_;
};

}  // namespace

std::unique_ptr<Allocator> make_select_allocator(const AllocatorSettings& settings) {
  return std::make_unique<SelectAllocator>(settings);
}

}  // namespace rdprune
