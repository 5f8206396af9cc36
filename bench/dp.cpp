// bench/dp: the rd allocator on synthetic convex curves at ResNet-20 and ResNet-50 sizes.
// Prints, per target: DP time (median of runs), peak memory, the objective's gap to the exact
// optimum (ResNet-20: a unit-cell DP; ResNet-50: the Lagrangian dual bound, a lower bound on the
// optimum), and the Lagrangian solver's gap to the DP. Also prints the table the reference's
// layers x surviving-weights DP would need, for scale.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "rdprune/allocate.h"
#include "rdprune/knapsack.h"

namespace {

using rdprune::BudgetKind;
using rdprune::CurveSet;
using rdprune::LayerCurve;

std::vector<int64_t> resnet20_layers() {
  std::vector<int64_t> sizes = {1 * 16 * 9};
  int64_t in = 16;
  for (int64_t planes : {16, 32, 64}) {
    for (int b = 0; b < 3; ++b) {
      sizes.push_back(in * planes * 9);
      sizes.push_back(planes * planes * 9);
      if (in != planes) sizes.push_back(in * planes);
      in = planes;
    }
  }
  sizes.push_back(64 * 10);
  return sizes;
}

std::vector<int64_t> resnet50_layers() {
  std::vector<int64_t> sizes = {3 * 64 * 49};
  int64_t in = 64;
  const int64_t blocks[] = {3, 4, 6, 3};
  const int64_t widths[] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = widths[stage];
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      sizes.push_back(in * planes);
      sizes.push_back(planes * planes * 9);
      sizes.push_back(planes * planes * 4);
      if (b == 0) sizes.push_back(in * planes * 4);
      in = planes * 4;
    }
  }
  sizes.push_back(2048 * 1000);
  return sizes;
}

// Convex, increasing distortion: d(s) = a * (exp(b * s) - 1) / (exp(b) - 1) with a, b per layer.
CurveSet synthetic_curves(const std::vector<int64_t>& sizes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  CurveSet curves;
  curves.metric = "mse";
  curves.levels = 100;
  const auto grid = rdprune::level_grid(100);
  for (size_t i = 0; i < sizes.size(); ++i) {
    LayerCurve layer;
    layer.name = "layer" + std::to_string(i);
    layer.weights = sizes[i];
    layer.flops_per_weight = 1;
    const double a = 0.1 + 10 * u(rng) / std::sqrt(static_cast<double>(sizes[i]) / 1000.0 + 1);
    const double b = 2 + 8 * u(rng);
    for (double s : grid) {
      layer.sparsity.push_back(s);
      layer.kept.push_back(rdprune::kept_at(s, sizes[i]));
      layer.distortion.push_back(a * (std::exp(b * s) - 1) / (std::exp(b) - 1));
    }
    curves.layers.push_back(std::move(layer));
  }
  return curves;
}

double peak_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

template <typename Fn>
double median_ms(Fn&& fn, int runs) {
  std::vector<double> times;
  for (int r = 0; r < runs; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::vector<std::vector<rdprune::Choice>> groups_of(const CurveSet& curves) {
  std::vector<std::vector<rdprune::Choice>> groups;
  for (const auto& layer : curves.layers) {
    std::vector<rdprune::Choice> choices;
    for (size_t k = 0; k + 1 < layer.sparsity.size(); ++k) {  // no empty layers, as allocate_rd's default
      choices.push_back({static_cast<double>(layer.kept[k]), layer.distortion[k]});
    }
    groups.push_back(choices);
  }
  return groups;
}

void run(const char* name, const std::vector<int64_t>& sizes, bool exact_reference, int64_t resolution) {
  const CurveSet curves = synthetic_curves(sizes, 1);
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  std::printf("\n%s: %zu layers, %lld weights, 101 levels\n", name, sizes.size(),
              static_cast<long long>(total));
  std::printf("  reference-style table (layers x surviving weights): %.1f M cells, %.0f MB as float64\n",
              static_cast<double>(sizes.size()) * static_cast<double>(total) / 1e6,
              static_cast<double>(sizes.size()) * static_cast<double>(total) * 8 / 1e6);
  std::printf("  %-7s %10s %10s %14s %14s %12s\n", "target", "dp ms", "peak MB", "gap to exact",
              "lagrange gap", "lagrange ms");
  const auto groups = groups_of(curves);
  for (double target : {0.5, 0.8, 0.9, 0.95, 0.98}) {
    rdprune::RdOptions options;
    options.sparsity_target = target;
    options.resolution = resolution;
    rdprune::Plan plan;
    const double dp_ms = median_ms([&] { plan = rdprune::allocate_rd(curves, options); }, 5);
    const double memory = peak_mb();
    const double dp = *plan.predicted_distortion;
    const double budget = std::floor((1 - target) * static_cast<double>(total) + 1e-9);
    double exact = 0;
    std::string gap_label;
    if (exact_reference) {
      rdprune::DpOptions unit_cells;
      unit_cells.resolution = static_cast<int64_t>(budget) + 1;  // one cell per weight: exact
      exact = rdprune::solve_dp(groups, budget, unit_cells).distortion;
      gap_label = "exact";
    } else {
      double bound = 0;
      rdprune::solve_lagrange(groups, budget, &bound);
      exact = bound;  // a lower bound on the optimum: the true gap is at most this
      gap_label = "<=";
    }
    options.solver = "lagrange";
    rdprune::Plan lagrange;
    const double lagrange_ms = median_ms([&] { lagrange = rdprune::allocate_rd(curves, options); }, 5);
    char gap[32];
    std::snprintf(gap, sizeof gap, "%s %.4f%%", exact_reference ? "" : "<=", 100 * (dp - exact) / exact);
    std::printf("  %-7.2f %10.2f %10.1f %14s %13.4f%% %12.3f\n", target, dp_ms, memory, gap,
                100 * (*lagrange.predicted_distortion - dp) / dp, lagrange_ms);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t resolution = argc > 1 ? std::atoll(argv[1]) : rdprune::RdOptions{}.resolution;
  std::printf("bench/dp: rd allocator on synthetic convex curves (DP resolution %lld cells)\n",
              static_cast<long long>(resolution));
  run("ResNet-20 sizes", resnet20_layers(), /*exact_reference=*/true, resolution);
  run("ResNet-50 sizes", resnet50_layers(), /*exact_reference=*/false, resolution);
  return 0;
}
