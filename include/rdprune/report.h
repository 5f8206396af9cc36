// Reports of `rdprune compare` and `rdprune additivity`: CSV and Markdown tables, and plots drawn
// by gnuplot (Debian's gnuplot-nox), run without a shell. Torch-free. Plots keep their data (.dat)
// and script (.gp) beside the PNG so they can be redrawn (`gnuplot NAME.gp` in that directory);
// without gnuplot, or when it fails, the PNG is left out and the plot function returns false.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rdprune/curves.h"
#include "rdprune/plan.h"

namespace rdprune {

// The method name of compare's control cells: the dense model, unpruned, through the same rounds of
// fine-tuning (and batch-norm recalibration) as every pruned cell, at sparsity target 0. What a
// pruned cell loses against it is what pruning cost, with fine-tuning's own gain taken out.
inline constexpr const char* kDenseControl = "dense";

struct CompareRow {
  std::string method;
  double sparsity_target = 0;
  double sparsity_achieved = 0;
  double flops_kept = 0;  // kept FLOPs / dense FLOPs of the prunable layers
  int64_t rounds = 1;
  int64_t finetune_steps = 0;
  double top1_pruned = 0;  // before fine-tuning (after the last round's pruning)
  double top1 = 0;         // final
  double top5 = 0;
  double loss = 0;
  double measured_distortion = 0;  // joint distortion of the plan on the calibration set (NaN: none)
  uint64_t seed = 0;
  std::vector<uint8_t> top1_hits;  // per test image, 1 when top-1 is correct (empty: unknown)
  // What the cell cost, summed over its rounds (rounds resumed from the first version: time only).
  double seconds = 0;             // wall time, with curves reused from the cache at their cost
  double reused_seconds = 0;      // of which curves reused from the cache (measured by another cell)
  int64_t train_steps = 0;        // every optimizer step, judging included
  int64_t judge_train_steps = 0;  // of which select spent judging plans
  int64_t forward_samples = 0;    // samples through a forward pass
};

// One method in one setting (target, rounds, fine-tuning steps) over the seeds it ran with, and
// its lead over the best other method in the same setting, paired seed by seed.
struct CompareSummary {
  std::string method;
  double sparsity_target = 0;
  int64_t rounds = 1;
  int64_t finetune_steps = 0;
  int64_t seeds = 0;
  double sparsity_achieved = 0;  // this and the next three: means over the seeds
  double flops_kept = 0;
  double top1_pruned = 0;
  double top1 = 0;
  double top1_sd = 0;  // sample standard deviation over the seeds (NaN for one seed)
  std::string rival;   // the other method with the highest mean top-1 in the setting (empty: none)
  double lead = 0;     // mean over the seeds both ran of top1 - rival's top1 (NaN: no rival)
  // The lead's standard error from what changes with the seed: sd of the differences / sqrt(n)
  // (NaN below two seeds).
  double lead_se_seeds = 0;
  // ... and from the sampling of the test images: the root mean over seeds of the paired variance
  // of each difference (hits.h; NaN without per-image outcomes for both).
  double lead_se_test = 0;
  // Both together, sqrt(seeds^2 + test^2), either alone where the other is NaN (NaN: neither).
  double lead_se = 0;
  // top1 - the dense control's top1 (kDenseControl, same rounds and fine-tuning steps), paired seed
  // by seed, and its standard error as lead_se's (NaN: no control, or this is the control).
  double vs_dense = 0;
  double vs_dense_se = 0;
};

// Groups `rows` by method and setting, ordered by rounds, fine-tuning steps and target, methods in
// the order they first appear. Rival ties go to the method listed first; the dense control is
// nobody's rival and has none. O(rows^2).
std::vector<CompareSummary> summarize_compare(const std::vector<CompareRow>& rows);

// Binomial standard error of a top-1 of `top1` measured on `samples` images: sqrt(p (1-p) / n).
double top1_standard_error(double top1, int64_t samples);

// results.csv (a row per cell and seed) and results.md (those rows, then every method against the
// best other one, over the seeds, and against the dense control where there is one) in `dir`;
// `test_samples` is the size of the test split evaluated.
void write_compare_tables(const std::string& dir, const std::vector<CompareRow>& rows, double dense_top1,
                          int64_t test_samples);

// top1_vs_sparsity.png: mean final top-1 against achieved sparsity, a line per method and setting
// (rounds, fine-tuning steps), with the standard deviation over seeds as error bars; the dense
// control, where there is one, as a level line per setting.
bool plot_accuracy(const std::string& dir, const std::vector<CompareSummary>& summary, double dense_top1);
// layer_sparsity.png: each layer's sparsity under each method's plan.
bool plot_layer_sparsity(const std::string& dir, const std::vector<std::pair<std::string, Plan>>& plans,
                         const std::string& title);
// rd_curves.png: every layer's distortion against sparsity (log scale).
bool plot_curves(const std::string& dir, const CurveSet& curves);
// additivity.png: measured joint distortion against the sum of the curves.
bool plot_additivity(const std::string& dir, const std::vector<double>& predicted,
                     const std::vector<double>& measured, const std::vector<std::string>& kinds,
                     const std::string& title);

// Pearson correlation of two equal-length series (NaN when undefined).
double pearson(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace rdprune
