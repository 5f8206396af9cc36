// rd: the rate-distortion allocator (Xu et al. ICCV 2023) and the refinement that lowers the same
// objective, the joint output distortion on the calibration set. It never looks at another
// allocator's plan.
#include "allocators.h"
#include "rdprune/error.h"

namespace rdprune {
namespace {

class RdAllocator : public Allocator {
 public:
  explicit RdAllocator(AllocatorSettings settings) : settings_(std::move(settings)) {}
  std::string name() const override { return "rd"; }

  Allocation allocate(AllocatorContext& context, const RdOptions& budget) override {
    if (context.calibration == nullptr) throw Error("rd: no calibration images to measure curves on");
    CurveOptions curve_options = settings_.curves;
    curve_options.sink = context.sink;
    const CurveSet curves = measure_curves(context.network, *context.calibration,
                                           context.calibration_description, context.layers, curve_options);
    if (context.save_curves) context.save_curves("curves", curves);
    Allocation allocation;
    allocation.plan = allocate_rd(curves, budget);
    if (settings_.refine == 0) return allocation;
    // Refinement judges with batch statistics when batch norm will be re-estimated: the network
    // evaluation will see.
    CurveOptions around = curve_options;
    around.recalibrate_bn = context.batch_statistics;
    JudgeInfo info;
    info.metric = curve_options.metric;
    PlanSearch search(
        joint_distortion_judge(context.network, *context.calibration, around, around.recalibrate_bn), info,
        context.sink);
    search.judge("rd", allocation.plan);
    refine_passes(search, context.network, *context.calibration, context.calibration_description,
                  context.layers, around, budget, settings_.refine, [&](int64_t pass, const CurveSet& set) {
                    if (context.save_curves)
                      context.save_curves("curves-refine-" + std::to_string(pass), set);
                  });
    allocation.plan = search.best();
    allocation.steps = search.finish();
    return allocation;
  }

 private:
  AllocatorSettings settings_;
};

}  // namespace

std::unique_ptr<Allocator> make_rd_allocator(const AllocatorSettings& settings) {
  return std::make_unique<RdAllocator>(settings);
}

}  // namespace rdprune
