// Reports of `rdprune compare` and `rdprune additivity`: CSV and Markdown tables, and plots drawn
// by gnuplot (Debian's gnuplot-nox). Torch-free. Plots keep their data (.dat) and script (.gp)
// beside the PNG so they can be redrawn; without gnuplot they are skipped with a warning.
#pragma once

#include <string>
#include <vector>

#include "rdprune/curves.h"
#include "rdprune/plan.h"

namespace rdprune {

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
};

// results.csv and results.md in `dir`.
void write_compare_tables(const std::string& dir, const std::vector<CompareRow>& rows, double dense_top1);

// top1_vs_sparsity.png: final top-1 against achieved sparsity, one line per method.
void plot_accuracy(const std::string& dir, const std::vector<CompareRow>& rows, double dense_top1);
// layer_sparsity.png: each layer's sparsity under each method's plan.
void plot_layer_sparsity(const std::string& dir, const std::vector<std::pair<std::string, Plan>>& plans,
                         const std::string& title);
// rd_curves.png: every layer's distortion against sparsity (log scale).
void plot_curves(const std::string& dir, const CurveSet& curves);
// additivity.png: measured joint distortion against the sum of the curves.
void plot_additivity(const std::string& dir, const std::vector<double>& predicted,
                     const std::vector<double>& measured, const std::vector<std::string>& kinds,
                     const std::string& title);

// Pearson correlation of two equal-length series (NaN when undefined).
double pearson(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace rdprune
