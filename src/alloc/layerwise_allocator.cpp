// OWL and AlphaPruning behind the Allocator interface: one statistic per layer from the network
// (outlier ratios of Wanda scores on the calibration images; heavy-tail exponents of the weight
// spectra, no data), turned into sparsities by rdprune/layerwise_rules.h.
#include <torch/torch.h>

#include "allocators.h"
#include "rdprune/criterion.h"
#include "rdprune/error.h"
#include "rdprune/layerwise_rules.h"

namespace rdprune {
namespace {

class OwlAllocator : public Allocator {
 public:
  explicit OwlAllocator(OwlOptions options) : options_(options) {}
  std::string name() const override { return "owl"; }

  Allocation allocate(AllocatorContext& context, const RdOptions& budget) override {
    if (context.calibration == nullptr || context.calibration->size() == 0)
      throw Error("owl: needs calibration images for its outlier scores");
    Network& network = context.network;
    // The round's wanda criterion measured these norms on the same images already.
    const auto norms = network.criterion() == "wanda"
                           ? network.input_norms()
                           : input_feature_norms(network, *context.calibration, 256);
    std::vector<double> ratios;
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < network.layers().size(); ++i)
      ratios.push_back(outlier_ratio(wanda_scores(network.layers()[i], norms[i]), options_.threshold));
    Allocation allocation;
    allocation.plan =
        allocate_owl(context.layers, ratios, options_, baseline_options(budget, budget.sparsity_target));
    return allocation;
  }

 private:
  OwlOptions options_;
};

class AlphaPruningAllocator : public Allocator {
 public:
  explicit AlphaPruningAllocator(AlphaOptions options) : options_(std::move(options)) {}
  std::string name() const override { return "alphapruning"; }

  Allocation allocate(AllocatorContext& context, const RdOptions& budget) override {
    std::vector<double> alphas;
    for (const auto& layer : context.network.layers())
      alphas.push_back(hill_alpha(weight_spectrum(layer), options_.fit));
    Allocation allocation;
    allocation.plan = allocate_alphapruning(context.layers, alphas, options_,
                                            baseline_options(budget, budget.sparsity_target));
    return allocation;
  }

 private:
  AlphaOptions options_;
};

}  // namespace

std::unique_ptr<Allocator> make_owl_allocator(const OwlOptions& options) {
  return std::make_unique<OwlAllocator>(options);
}

std::unique_ptr<Allocator> make_alphapruning_allocator(const AlphaOptions& options) {
  return std::make_unique<AlphaPruningAllocator>(options);
}

}  // namespace rdprune
