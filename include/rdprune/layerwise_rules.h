// Layer-wise sparsity rules of the LLM-pruning literature, torch-free (docs/design.md, "OWL and
// AlphaPruning"): each turns one number per layer (an outlier ratio, a heavy-tail exponent) into a
// family of sparsities, and the family member that meets the budget is the plan.
#pragma once

#include <string>
#include <vector>

#include "rdprune/baselines.h"
#include "rdprune/layer.h"
#include "rdprune/plan.h"

namespace rdprune {

struct OwlOptions {
  double threshold = 5;  // M: a weight is an outlier when its score exceeds M times its layer's mean
  double lambda = 0.08;  // sparsities lie within +-lambda of the target
};

struct AlphaOptions {
  double epsilon = 0.3;      // sparsities lie within a factor [1 - epsilon, 1 + epsilon] of the target
  std::string fit = "peak";  // xmin of the power-law fit: peak (KS-best near the density's peak) | median
};

void validate(const OwlOptions& options);
void validate(const AlphaOptions& options);

// OWL (Yin et al. ICML 2024, section 3): density_i = c + 2 lambda (D_i - min D) / (max D - min D)
// - mean of those terms, with D_i the layer's outlier ratio and c solved so that the kept cost
// meets the budget (1 - target when all layers are the same size, as in the paper).
Plan allocate_owl(const std::vector<LayerInfo>& layers, const std::vector<double>& outlier_ratio,
                  const OwlOptions& owl, const BaselineOptions& options);

// AlphaPruning (Lu et al. NeurIPS 2024, section 3.2): sparsity_i = s r_i with r_i = 1 - epsilon +
// 2 epsilon (alpha_i - min alpha) / (max alpha - min alpha) and s solved so that the kept cost
// meets the budget: layers with heavier tails (smaller alpha, better trained) are pruned less.
Plan allocate_alphapruning(const std::vector<LayerInfo>& layers, const std::vector<double>& alpha,
                           const AlphaOptions& alpha_options, const BaselineOptions& options);

// The power-law exponent of an empirical spectral density by Hill's estimator (Lu et al., eq. 4):
// alpha = 1 + n / sum_{j >= k} ln(lambda_j / lambda_k) over the n eigenvalues from xmin = lambda_k
// up. fit "median": xmin is the median eigenvalue; "peak": the xmin within [0.95, 1.5] times the
// peak of the log-spaced histogram (100 bins) whose fit has the smallest Kolmogorov-Smirnov
// distance. Eigenvalues at or below 1e-12 of the largest are left out; fewer than two: alpha 1.
double hill_alpha(std::vector<double> eigenvalues, const std::string& fit);

}  // namespace rdprune
