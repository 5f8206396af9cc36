#include "rdprune/layerwise_rules.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "rdprune/error.h"

namespace rdprune {
namespace {

// The plan of densities clamp(density(i, t), 0, cap_i) for the largest t in [low, high] whose kept
// cost is within budget; `density` does not fall as t grows. Layers kept dense keep what they have.
Plan allocate_by_family(const std::string& method, const std::vector<LayerInfo>& layers,
                        const std::function<double(size_t, double)>& density, double low, double high,
                        const BaselineOptions& options) {
  check_sparsity_target(options.sparsity_target, "sparsity_target");
  if (layers.empty()) throw Error(method + ": the model has no prunable layers");
  check_keep_dense(options.keep_dense, names_of(layers), "the model");
  const double budget = total_budget(layers, options);
  auto kept_at = [&](double t) {
    std::vector<int64_t> kept(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      const double cap = static_cast<double>(unpruned(layers[i])) / static_cast<double>(layers[i].weights);
      const double d =
          is_kept_dense(options.keep_dense, layers[i].name) ? cap : std::clamp(density(i, t), 0.0, cap);
      kept[i] = static_cast<int64_t>(std::floor(d * static_cast<double>(layers[i].weights) + 1e-9));
    }
    return kept;
  };
  auto cost_at = [&](double t) {
    const auto kept = kept_at(t);
    double cost = 0;
    for (size_t i = 0; i < layers.size(); ++i)
      cost += static_cast<double>(kept[i]) * unit_cost(options.budget, layers[i]);
    return cost;
  };
  for (int iteration = 0; iteration < 100; ++iteration) {
    const double mid = 0.5 * (low + high);
    (cost_at(mid) <= budget ? low : high) = mid;
  }
  return make_plan(method, layers, kept_at(low), options);
}

// (x_i - min x) / (max x - min x); all zeros when every x_i is the same.
std::vector<double> min_max_scaled(const std::vector<double>& x) {
  const auto [lowest, highest] = std::minmax_element(x.begin(), x.end());
  std::vector<double> scaled(x.size(), 0.0);
  if (*highest - *lowest <= 0) return scaled;
  for (size_t i = 0; i < x.size(); ++i) scaled[i] = (x[i] - *lowest) / (*highest - *lowest);
  return scaled;
}

void check_per_layer(const std::string& method, const std::vector<double>& values, size_t layers) {
  if (values.size() != layers) throw Error(method + ": one value per layer expected");
  for (double v : values) {
    if (!std::isfinite(v)) throw Error(method + ": a layer's statistic is not finite");
  }
}

// Hill's estimate with xmin = eigenvalues[k] (ascending), and its Kolmogorov-Smirnov distance.
std::pair<double, double> hill_fit(const std::vector<double>& eigenvalues, size_t k) {
  const size_t n = eigenvalues.size() - k;
  double sum = 0;
  for (size_t j = k; j < eigenvalues.size(); ++j) sum += std::log(eigenvalues[j] / eigenvalues[k]);
  if (sum <= 0) return {std::numeric_limits<double>::infinity(), 1.0};
  const double alpha = 1.0 + static_cast<double>(n) / sum;
  double distance = 0;
  for (size_t j = k; j < eigenvalues.size(); ++j) {
    const double fitted = 1.0 - std::pow(eigenvalues[j] / eigenvalues[k], 1.0 - alpha);
    distance = std::max(distance, std::abs(fitted - static_cast<double>(j - k) / static_cast<double>(n)));
  }
  return {alpha, distance};
}

}  // namespace

void validate(const OwlOptions& options) {
  if (!(options.threshold > 0) || !std::isfinite(options.threshold))
    throw UsageError("owl_threshold", "expected a number > 0");
  if (!(options.lambda >= 0 && options.lambda <= 0.5))
    throw UsageError("owl_lambda", "expected a number in [0, 0.5]");
}

void validate(const AlphaOptions& options) {
  if (!(options.epsilon >= 0 && options.epsilon < 1))
    throw UsageError("alpha_epsilon", "expected a number in [0, 1)");
  if (options.fit != "peak" && options.fit != "median")
    throw UsageError("alpha_fit", "expected peak or median, got '" + options.fit + "'");
}

Plan allocate_owl(const std::vector<LayerInfo>& layers, const std::vector<double>& outlier_ratio,
                  const OwlOptions& owl, const BaselineOptions& options) {
  validate(owl);
  check_per_layer("owl", outlier_ratio, layers.size());
  std::vector<double> shift = min_max_scaled(outlier_ratio);
  double mean = 0;
  for (double& s : shift) mean += (s *= 2 * owl.lambda) / static_cast<double>(shift.size());
  for (double& s : shift) s -= mean;
  return allocate_by_family(
      "owl", layers, [&](size_t i, double c) { return c + shift[i]; }, -1.0, 2.0, options);
}

Plan allocate_alphapruning(const std::vector<LayerInfo>& layers, const std::vector<double>& alpha,
                           const AlphaOptions& alpha_options, const BaselineOptions& options) {
  validate(alpha_options);
  check_per_layer("alphapruning", alpha, layers.size());
  std::vector<double> ratio = min_max_scaled(alpha);
  for (double& r : ratio) r = 1.0 - alpha_options.epsilon + 2.0 * alpha_options.epsilon * r;
  // t = -s: the density 1 - s r_i grows with t.
  return allocate_by_family(
      "alphapruning", layers, [&](size_t i, double t) { return 1.0 + t * ratio[i]; },
      -1.0 / (1.0 - alpha_options.epsilon), 0.0, options);
}

double hill_alpha(std::vector<double> eigenvalues, const std::string& fit) {
  std::sort(eigenvalues.begin(), eigenvalues.end());
  const double largest = eigenvalues.empty() ? 0.0 : eigenvalues.back();
  eigenvalues.erase(std::remove_if(eigenvalues.begin(), eigenvalues.end(),
                                   [&](double e) { return !(e > 1e-12 * largest) || !std::isfinite(e); }),
                    eigenvalues.end());
  const size_t count = eigenvalues.size();
  if (count < 2) return 1.0;
  const size_t median = count / 2;
  if (fit == "median") return hill_fit(eigenvalues, median).first;
  // The peak of the density of log10(eigenvalue), 100 bins.
  const double lo = std::log10(eigenvalues.front());
  const double width = (std::log10(eigenvalues.back()) - lo) / 100.0;
  std::vector<int64_t> bins(100, 0);
  for (double e : eigenvalues) {
    const auto bin = width > 0 ? static_cast<size_t>((std::log10(e) - lo) / width) : 0;
    ++bins[std::min<size_t>(bin, 99)];
  }
  const auto peak = static_cast<double>(std::max_element(bins.begin(), bins.end()) - bins.begin());
  const double xmin = std::pow(10.0, lo + peak * width);
  double best_alpha = 0;
  double best_distance = std::numeric_limits<double>::infinity();
  for (size_t k = 0; k + 1 < count; ++k) {
    if (eigenvalues[k] < 0.95 * xmin || eigenvalues[k] > 1.5 * xmin) continue;
    const auto [alpha, distance] = hill_fit(eigenvalues, k);
    if (alpha > 1 && std::isfinite(alpha) && distance < best_distance) {
      best_alpha = alpha;
      best_distance = distance;
    }
  }
  return std::isfinite(best_distance) ? best_alpha : hill_fit(eigenvalues, median).first;
}

}  // namespace rdprune
