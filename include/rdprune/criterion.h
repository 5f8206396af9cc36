// Within-layer criteria (docs/design.md, "Criteria"): the order in which a layer's weights go.
// magnitude (the paper's, the default): |w|, compared over the whole layer. wanda (Sun et al. ICLR
// 2024): |w_ij| * ||x_j||_2 with x_j input feature j over the calibration images, compared within
// each output feature (row), as Wanda does.
#pragma once

#include "rdprune/layering.h"

#include <string>
#include <vector>

#include <torch/types.h>

#include "rdprune/dataset.h"
#include "rdprune/network.h"

namespace rdprune {

RDPRUNE_LAYER(2, "nn");

const std::vector<std::string>& criterion_names();
// Throws UsageError naming "criterion" for a name not in criterion_names().
void check_criterion(const std::string& name);

// The axis of a layer's weight that indexes its output features: 1 for linear_t ([in, out]) and
// transposed convolutions ([in, out / groups, ...]), else 0.
int64_t output_axis(const std::string& type);

// Per layer, the root mean square over `data`'s samples of ||x_j||_2, the norm of each input
// feature j over a sample's positions (tokens, pixels), shaped to broadcast against the layer's
// weight; a convolution's feature is an input channel, the same for every kernel position; an
// embedding, which reads no features, has ones (its wanda scores are its magnitudes). Runs
// the network in eval mode with gradients on (PyTorch's unfused attention path).
std::vector<torch::Tensor> input_feature_norms(Network& network, const Dataset& data, int64_t batch_size);

// Wanda's scores of `layer` (float64, the weight's shape): |w| times `input_norms` (one layer's
// entry of input_feature_norms()).
torch::Tensor wanda_scores(const PrunableLayer& layer, const torch::Tensor& input_norms);

// The network's criterion scores of layer `layer` (float64, the weight's shape): |w|, or |w| times
// the input norms the network holds.
torch::Tensor criterion_scores(const Network& network, size_t layer);

// OWL's layerwise outlier ratio (Yin et al. ICML 2024, section 3.2): the share of `scores` above
// `threshold` times their mean.
double outlier_ratio(const torch::Tensor& scores, double threshold);

// The eigenvalues of W^T W that AlphaPruning fits (Lu et al. NeurIPS 2024): the squared singular
// values of the weight as a matrix [out, in]; a convolution's, pooled over kernel positions; an
// embedding's as [entries, features].
std::vector<double> weight_spectrum(const PrunableLayer& layer);

}  // namespace rdprune
