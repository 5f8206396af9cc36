#include "rdprune/report.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "rdprune/atomic_file.h"

namespace rdprune {
namespace fs = std::filesystem;

namespace {

// Writes name.dat and name.gp into dir and renders name.png with gnuplot.
void render(const std::string& dir, const std::string& name, const std::string& data,
            const std::string& script) {
  const fs::path base = fs::path(dir) / name;
  write_file_atomic(base.string() + ".dat", data);
  const std::string full = fmt::format(
      "set terminal pngcairo size 1000,640 font 'sans,10'\nset output '{}.png'\nset datafile separator ','\n"
      "set key outside right\nset grid\n{}",
      base.string(), script);
  write_file_atomic(base.string() + ".gp", full);
  const std::string command = fmt::format("gnuplot '{}.gp' 2>'{}.log'", base.string(), base.string());
  if (std::system(command.c_str()) != 0) {
    std::cerr << "report: gnuplot could not draw " << base.string() << ".png (see " << base.string()
              << ".log); the data and script are kept\n";
  }
}

}  // namespace

void write_compare_tables(const std::string& dir, const std::vector<CompareRow>& rows, double dense_top1) {
  std::string csv =
      "method,sparsity_target,sparsity_achieved,flops_kept_percent,rounds,finetune_steps,top1_before_"
      "finetune,"
      "top1,top5,loss,dense_top1,measured_distortion\n";
  std::string md = fmt::format("Dense top-1: {:.2f}%\n\n", 100 * dense_top1);
  md +=
      "| method | target | achieved sparsity | kept FLOPs % | rounds | fine-tune steps | top-1 before "
      "fine-tune | top-1 | top-5 | measured distortion |\n";
  md += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const auto& row : rows) {
    const bool measured = std::isfinite(row.measured_distortion);
    csv += fmt::format("{},{:.4f},{:.6f},{:.4f},{},{},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{}\n", row.method,
                       row.sparsity_target, row.sparsity_achieved, 100 * row.flops_kept, row.rounds,
                       row.finetune_steps, row.top1_pruned, row.top1, row.top5, row.loss, dense_top1,
                       measured ? fmt::format("{:.6g}", row.measured_distortion) : std::string());
    md += fmt::format("| {} | {:.2f} | {:.4f} | {:.2f} | {} | {} | {:.2f}% | {:.2f}% | {:.2f}% | {} |\n",
                      row.method, row.sparsity_target, row.sparsity_achieved, 100 * row.flops_kept,
                      row.rounds, row.finetune_steps, 100 * row.top1_pruned, 100 * row.top1, 100 * row.top5,
                      measured ? fmt::format("{:.4g}", row.measured_distortion) : std::string("-"));
  }
  write_file_atomic((fs::path(dir) / "results.csv").string(), csv);
  write_file_atomic((fs::path(dir) / "results.md").string(), md);
}

void plot_accuracy(const std::string& dir, const std::vector<CompareRow>& rows, double dense_top1) {
  std::map<std::string, std::vector<const CompareRow*>> by_method;
  for (const auto& row : rows) by_method[row.method].push_back(&row);
  std::string data;
  std::string plots;
  int block = 0;
  for (const auto& [method, list] : by_method) {
    data += "# " + method + "\n";
    for (const auto* row : list)
      data += fmt::format("{:.6f},{:.6f}\n", row->sparsity_achieved, 100 * row->top1);
    data += "\n\n";
    plots += fmt::format("{}'{}' index {} using 1:2 with linespoints title '{}'", block ? ", " : "",
                         (fs::path(dir) / "top1_vs_sparsity.dat").string(), block, method);
    ++block;
  }
  const std::string script = fmt::format(
      "set title 'Top-1 against sparsity (dense {:.2f}%)'\nset xlabel 'sparsity'\nset ylabel 'top-1 (%)'\n"
      "plot {}, {:.6f} with lines dashtype 2 title 'dense'\n",
      100 * dense_top1, plots, 100 * dense_top1);
  render(dir, "top1_vs_sparsity", data, script);
}

void plot_layer_sparsity(const std::string& dir, const std::vector<std::pair<std::string, Plan>>& plans,
                         const std::string& title) {
  if (plans.empty()) return;
  std::string data = "layer";
  for (const auto& [method, plan] : plans) data += "," + method;
  data += "\n";
  const auto& layers = plans.front().second.layers;
  for (size_t i = 0; i < layers.size(); ++i) {
    data += fmt::format("{}", i);
    for (const auto& entry : plans) data += fmt::format(",{:.6f}", entry.second.layers[i].sparsity());
    data += "\n";
  }
  std::string plots;
  for (size_t m = 0; m < plans.size(); ++m) {
    plots += fmt::format("{}'{}' using 1:{} with linespoints title '{}'", m ? ", " : "",
                         (fs::path(dir) / "layer_sparsity.dat").string(), m + 2, plans[m].first);
  }
  std::string labels;
  for (size_t i = 0; i < layers.size(); ++i)
    labels += fmt::format("{}'{}' {}", i ? ", " : "", layers[i].name, i);
  const std::string script = fmt::format(
      "set title '{}'\nset ylabel 'layer sparsity'\nset yrange [0:1.02]\nset xtics ({}) rotate by 60 right "
      "font ',7'\n"
      "set key autotitle columnhead\nplot {}\n",
      title, labels, plots);
  render(dir, "layer_sparsity", data, script);
}

void plot_curves(const std::string& dir, const CurveSet& curves) {
  std::string data;
  std::string plots;
  for (size_t i = 0; i < curves.layers.size(); ++i) {
    const auto& layer = curves.layers[i];
    data += "# " + layer.name + "\n";
    for (size_t k = 0; k < layer.sparsity.size(); ++k) {
      if (layer.distortion[k] > 0)
        data += fmt::format("{:.6f},{:.9g}\n", layer.sparsity[k], layer.distortion[k]);
    }
    data += "\n\n";
    plots += fmt::format("{}'{}' index {} using 1:2 with lines title '{}'", i ? ", " : "",
                         (fs::path(dir) / "rd_curves.dat").string(), i, layer.name);
  }
  const std::string script = fmt::format(
      "set title 'Rate-distortion curves ({} distortion, {})'\nset xlabel 'layer sparsity'\nset ylabel "
      "'output distortion'\n"
      "set logscale y\nset key font ',7'\nplot {}\n",
      curves.metric, curves.calibration, plots);
  render(dir, "rd_curves", data, script);
}

void plot_additivity(const std::string& dir, const std::vector<double>& predicted,
                     const std::vector<double>& measured, const std::vector<std::string>& kinds,
                     const std::string& title) {
  std::set<std::string> unique(kinds.begin(), kinds.end());
  std::string data;
  std::string plots;
  int block = 0;
  for (const auto& kind : unique) {
    data += "# " + kind + "\n";
    for (size_t i = 0; i < predicted.size(); ++i) {
      if (kinds[i] == kind) data += fmt::format("{:.9g},{:.9g}\n", predicted[i], measured[i]);
    }
    data += "\n\n";
    plots += fmt::format("{}'{}' index {} using 1:2 with points pointtype 7 title '{}'", block ? ", " : "",
                         (fs::path(dir) / "additivity.dat").string(), block, kind);
    ++block;
  }
  const std::string script = fmt::format(
      "set title '{}'\nset xlabel 'sum of per-layer curve distortions'\nset ylabel 'measured joint "
      "distortion'\n"
      "set logscale xy\nplot {}, x with lines dashtype 2 title 'y = x'\n",
      title, plots);
  render(dir, "additivity", data, script);
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = std::min(x.size(), y.size());
  if (n < 2) return std::nan("");
  double mx = 0;
  double my = 0;
  for (size_t i = 0; i < n; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double sxy = 0;
  double sxx = 0;
  double syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : std::nan("");
}

}  // namespace rdprune
