// The baselines behind the Allocator interface: global, lamp, uniform, uniform+ and erk.
#include "allocators.h"
#include "rdprune/magnitude_baselines.h"

namespace rdprune {
namespace {

class BaselineAllocator : public Allocator {
 public:
  explicit BaselineAllocator(std::string method) : method_(std::move(method)) {}
  std::string name() const override { return method_; }

  Allocation allocate(AllocatorContext& context, const RdOptions& budget) override {
    Allocation allocation;
    allocation.plan = allocate_baseline(method_, context.network, context.layers,
                                        baseline_options(budget, budget.sparsity_target));
    return allocation;
  }

 private:
  std::string method_;
};

}  // namespace

std::unique_ptr<Allocator> make_baseline_allocator(const std::string& method) {
  return std::make_unique<BaselineAllocator>(method);
}

}  // namespace rdprune
