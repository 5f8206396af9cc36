#include "rdprune/report.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <tuple>

#include <fcntl.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "rdprune/atomic_file.h"
#include "rdprune/hits.h"

namespace rdprune {
namespace fs = std::filesystem;

namespace {

// A gnuplot string literal: single quotes, a quote inside doubled, so that no name (a directory, a
// layer, a method) can end the string or reach gnuplot's command substitution.
std::string gp(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  return quoted + "'";
}

// Runs `gnuplot script` in `dir` with its output in `log` (both relative to dir): no shell, so no
// name is ever interpreted. Returns gnuplot's exit status, 127 when it cannot be started.
int run_gnuplot(const std::string& dir, const std::string& script, const std::string& log) {
  const pid_t child = ::fork();
  if (child < 0) return 127;
  if (child == 0) {
#ifdef __linux__
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no drawing outlives rdprune
#endif
    if (::chdir(dir.c_str()) != 0) ::_exit(127);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    ::execlp("gnuplot", "gnuplot", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 127;
}

// Writes name.dat and name.gp into dir and renders name.png with gnuplot, which runs in dir (the
// scripts name their data without a directory). The PNG is drawn under a temporary name and
// renamed into place when gnuplot succeeds; when it fails, no PNG is left (not even an older one
// that would disagree with the data). Returns whether the PNG was drawn.
bool render(const std::string& dir, const std::string& name, const std::string& data,
            const std::string& script) {
  const fs::path base = fs::path(dir) / name;
  write_file_atomic(base.string() + ".dat", data);
  const auto with_output = [&](const std::string& png) {
    return fmt::format(
        "set terminal pngcairo size 1000,640 font 'sans,10'\nset output {}\nset datafile separator ','\n"
        "set key outside right\nset grid\n{}",
        gp(png), script);
  };
  write_file_atomic(base.string() + ".gp", with_output(name + ".png"));
  const std::string suffix = ".tmp." + std::to_string(::getpid());
  const std::string drawing = name + ".png" + suffix;
  // Both temporaries go if a signal ends the drawing; a killed run's are removed by the next.
  remove_stale_temporaries(base.string() + ".png");
  remove_stale_temporaries(base.string() + ".gp");
  const SignalRemovesFile script_removed(base.string() + ".gp" + suffix);
  const SignalRemovesFile drawing_removed((fs::path(dir) / drawing).string());
  write_file_atomic(base.string() + ".gp" + suffix, with_output(drawing));
  const int status = run_gnuplot(dir, name + ".gp" + suffix, name + ".log");
  fs::remove(base.string() + ".gp" + suffix);
  const fs::path drawn = fs::path(dir) / drawing;
  std::error_code error;
  if (status == 0 && fs::is_regular_file(drawn) && fs::file_size(drawn) > 0) {
    fs::rename(drawn, base.string() + ".png", error);
    if (!error) return true;
  }
  fs::remove(drawn, error);
  fs::remove(base.string() + ".png", error);
  return false;
}

struct MeanSd {
  double mean = 0;
  double sd = 0;  // sample standard deviation; NaN below two values
};

MeanSd mean_sd(const std::vector<double>& values) {
  MeanSd out;
  if (values.empty()) return {std::nan(""), std::nan("")};
  for (double v : values) out.mean += v;
  out.mean /= static_cast<double>(values.size());
  if (values.size() < 2) {
    out.sd = std::nan("");
    return out;
  }
  double squares = 0;
  for (double v : values) squares += (v - out.mean) * (v - out.mean);
  out.sd = std::sqrt(squares / static_cast<double>(values.size() - 1));
  return out;
}

bool same_setting(const CompareSummary& a, const CompareSummary& b) {
  return a.sparsity_target == b.sparsity_target && a.rounds == b.rounds &&
         a.finetune_steps == b.finetune_steps;
}

// "+0.42 ± 0.15", "+0.42" without an error, "-" without a value (points of top-1).
// A cell's seconds, with the part its reused curves were charged when there is one.
std::string seconds_text(const CompareRow& row) {
  if (row.reused_seconds < 0.5) return fmt::format("{:.0f}", row.seconds);
  return fmt::format("{:.0f} ({:.0f} reused)", row.seconds, row.reused_seconds);
}

std::string format_lead(double lead, double se) {
  if (!std::isfinite(lead)) return "-";
  std::string text = fmt::format("{:+.2f}", 100 * lead);
  if (std::isfinite(se)) text += fmt::format(" ± {:.2f}", 100 * se);
  return text;
}

// The top-1 differences of one group's rows from another's, paired seed by seed over the seeds both
// ran: their mean and its standard error from the seeds' spread, from the test images' sampling
// (paired outcomes, when every pair has them) and both together (NaN where unknown).
struct Paired {
  double mean = std::nan("");
  double se_seeds = std::nan("");
  double se_test = std::nan("");
  double se = std::nan("");
};

Paired pair_seeds(const std::vector<const CompareRow*>& mine, const std::vector<const CompareRow*>& theirs) {
  std::vector<double> differences;            // seed by seed, over the seeds both ran
  std::vector<std::vector<uint8_t>> my_hits;  // and the per-image outcomes of those seeds
  std::vector<std::vector<uint8_t>> their_hits;
  for (const CompareRow* a : mine) {
    for (const CompareRow* b : theirs) {
      if (b->seed != a->seed) continue;
      differences.push_back(a->top1 - b->top1);
      if (!a->top1_hits.empty() && a->top1_hits.size() == b->top1_hits.size()) {
        my_hits.push_back(a->top1_hits);
        their_hits.push_back(b->top1_hits);
      }
    }
  }
  Paired out;
  if (differences.empty()) return out;
  const MeanSd stats = mean_sd(differences);
  out.mean = stats.mean;
  out.se_seeds = stats.sd / std::sqrt(static_cast<double>(differences.size()));
  const bool all_paired = my_hits.size() == differences.size() &&
                          std::all_of(my_hits.begin(), my_hits.end(), [&](const auto& hits) {
                            return hits.size() == my_hits.front().size();
                          });
  if (all_paired) out.se_test = paired_difference_over_runs(my_hits, their_hits).standard_error;
  const bool seeds_known = std::isfinite(out.se_seeds);
  const bool test_known = std::isfinite(out.se_test);
  out.se = seeds_known && test_known ? std::hypot(out.se_seeds, out.se_test)
                                     : (seeds_known ? out.se_seeds : out.se_test);
  return out;
}

}  // namespace

std::vector<CompareSummary> summarize_compare(const std::vector<CompareRow>& rows) {
  std::vector<CompareSummary> summary;
  std::vector<std::vector<const CompareRow*>> members;  // parallel to summary
  for (const auto& row : rows) {
    CompareSummary key;
    key.method = row.method;
    key.sparsity_target = row.sparsity_target;
    key.rounds = row.rounds;
    key.finetune_steps = row.finetune_steps;
    size_t g = 0;
    while (g < summary.size() && !(summary[g].method == row.method && same_setting(summary[g], key))) ++g;
    if (g == summary.size()) {
      summary.push_back(key);
      members.emplace_back();
    }
    members[g].push_back(&row);
  }
  for (size_t g = 0; g < summary.size(); ++g) {
    CompareSummary& s = summary[g];
    std::vector<double> top1;
    for (const CompareRow* row : members[g]) {
      s.sparsity_achieved += row->sparsity_achieved;
      s.flops_kept += row->flops_kept;
      s.top1_pruned += row->top1_pruned;
      top1.push_back(row->top1);
    }
    const auto n = static_cast<double>(members[g].size());
    s.seeds = static_cast<int64_t>(members[g].size());
    s.sparsity_achieved /= n;
    s.flops_kept /= n;
    s.top1_pruned /= n;
    const MeanSd stats = mean_sd(top1);
    s.top1 = stats.mean;
    s.top1_sd = stats.sd;
  }
  const auto is_control = [&](size_t g) { return summary[g].method == kDenseControl; };
  for (size_t g = 0; g < summary.size(); ++g) {
    CompareSummary& s = summary[g];
    std::optional<size_t> rival;
    std::optional<size_t> control;
    for (size_t h = 0; h < summary.size() && !is_control(g); ++h) {
      if (is_control(h)) {
        if (summary[h].rounds == s.rounds && summary[h].finetune_steps == s.finetune_steps) control = h;
        continue;
      }
      if (summary[h].method == s.method || !same_setting(summary[h], s)) continue;
      if (!rival || summary[h].top1 > summary[*rival].top1) rival = h;
    }
    const Paired lead = rival ? pair_seeds(members[g], members[*rival]) : Paired{};
    if (rival) s.rival = summary[*rival].method;
    s.lead = lead.mean;
    s.lead_se_seeds = lead.se_seeds;
    s.lead_se_test = lead.se_test;
    s.lead_se = lead.se;
    const Paired below = control ? pair_seeds(members[g], members[*control]) : Paired{};
    s.vs_dense = below.mean;
    s.vs_dense_se = below.se;
  }
  // Setting by setting, so the methods at one target read down a column.
  std::stable_sort(summary.begin(), summary.end(), [](const CompareSummary& a, const CompareSummary& b) {
    return std::tie(a.rounds, a.finetune_steps, a.sparsity_target) <
           std::tie(b.rounds, b.finetune_steps, b.sparsity_target);
  });
  return summary;
}

double top1_standard_error(double top1, int64_t samples) {
  if (samples <= 0 || !std::isfinite(top1)) return std::nan("");
  const double p = std::clamp(top1, 0.0, 1.0);
  return std::sqrt(p * (1 - p) / static_cast<double>(samples));
}

void write_compare_tables(const std::string& dir, const std::vector<CompareRow>& rows, double dense_top1,
                          int64_t test_samples) {
  std::set<uint64_t> seeds;
  for (const auto& row : rows) seeds.insert(row.seed);
  const bool several_seeds = seeds.size() > 1;
  std::string csv =
      "method,sparsity_target,sparsity_achieved,flops_kept_percent,rounds,finetune_steps,top1_before_"
      "finetune,"
      "top1,top5,loss,dense_top1,measured_distortion,seed,seconds,train_steps,judge_train_steps,forward_"
      "samples,reused_seconds\n";
  std::string md = fmt::format(
      "Dense top-1: {:.2f}% on {} test images (the binomial standard error of one "
      "top-1 figure there: {:.2f} points)\n\n",
      100 * dense_top1, test_samples, 100 * top1_standard_error(dense_top1, test_samples));
  md += fmt::format(
      "| method | target | achieved sparsity | kept FLOPs % | rounds | fine-tune steps | top-1 before "
      "fine-tune | top-1 | top-5 | measured distortion | seconds | train steps (judging) | forward samples "
      "|{}\n",
      several_seeds ? " seed |" : "");
  md += fmt::format("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |{}\n",
                    several_seeds ? " --- |" : "");
  for (const auto& row : rows) {
    const bool measured = std::isfinite(row.measured_distortion);
    csv += fmt::format(
        "{},{:.4f},{:.6f},{:.4f},{},{},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{},{},{:.1f},{},{},{},{:.1f}\n",
        row.method, row.sparsity_target, row.sparsity_achieved, 100 * row.flops_kept, row.rounds,
        row.finetune_steps, row.top1_pruned, row.top1, row.top5, row.loss, dense_top1,
        measured ? fmt::format("{:.6g}", row.measured_distortion) : std::string(), row.seed, row.seconds,
        row.train_steps, row.judge_train_steps, row.forward_samples, row.reused_seconds);
    md += fmt::format(
        "| {} | {:.2f} | {:.4f} | {:.2f} | {} | {} | {:.2f}% | {:.2f}% | {:.2f}% | {} | {} | {} ({}) | "
        "{} |{}\n",
        row.method, row.sparsity_target, row.sparsity_achieved, 100 * row.flops_kept, row.rounds,
        row.finetune_steps, 100 * row.top1_pruned, 100 * row.top1, 100 * row.top5,
        measured ? fmt::format("{:.4g}", row.measured_distortion) : std::string("-"), seconds_text(row),
        row.train_steps, row.judge_train_steps, row.forward_samples,
        several_seeds ? fmt::format(" {} |", row.seed) : std::string());
  }
  const std::vector<CompareSummary> summary = summarize_compare(rows);
  const bool rivals =
      std::any_of(summary.begin(), summary.end(), [](const CompareSummary& s) { return !s.rival.empty(); });
  const bool control = std::any_of(summary.begin(), summary.end(),
                                   [](const CompareSummary& s) { return s.method == kDenseControl; });
  if (several_seeds || rivals || control) {
    if (several_seeds) {
      md += fmt::format(
          "\nEach method against the best other method in the same setting, over {} seeds. Lead: points "
          "of top-1, the mean of the seed-by-seed differences ± its standard error, from what changes "
          "with the seed (± seeds: the spread of the differences) and from the sampling of the test "
          "images (± test: paired, from the images only one of the two classifies correctly).\n\n",
          seeds.size());
    } else if (rivals) {
      md +=
          "\nEach method against the best other method in the same setting. Lead: points of top-1 ± its "
          "standard error from the sampling of the test images (paired, from the images only one of the "
          "two classifies correctly).\n\n";
    } else {
      md += "\n";
    }
    if (control) {
      md += fmt::format(
          "The {} rows are the dense model fine-tuned by the same schedule, unpruned; vs dense: each "
          "method's top-1 minus theirs, paired by seed ± its standard error, what pruning cost.\n\n",
          kDenseControl);
    }
    md += fmt::format(
        "| method | target | rounds | fine-tune steps | seeds | achieved sparsity | top-1 | sd | best other "
        "method | lead | ± seeds | ± test |{}\n",
        control ? " vs dense |" : "");
    md += fmt::format("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |{}\n",
                      control ? " --- |" : "");
    const auto points = [](double value) {
      return std::isfinite(value) ? fmt::format("{:.2f}", 100 * value) : std::string("-");
    };
    for (const auto& s : summary) {
      md += fmt::format("| {} | {:.2f} | {} | {} | {} | {:.4f} | {:.2f}% | {} | {} | {} | {} | {} |{}\n",
                        s.method, s.sparsity_target, s.rounds, s.finetune_steps, s.seeds, s.sparsity_achieved,
                        100 * s.top1, points(s.top1_sd), s.rival.empty() ? "-" : s.rival,
                        format_lead(s.lead, s.lead_se), points(s.lead_se_seeds), points(s.lead_se_test),
                        control ? " " + format_lead(s.vs_dense, s.vs_dense_se) + " |" : "");
    }
  }
  write_file_atomic((fs::path(dir) / "results.csv").string(), csv);
  write_file_atomic((fs::path(dir) / "results.md").string(), md);
}

bool plot_accuracy(const std::string& dir, const std::vector<CompareSummary>& summary, double dense_top1) {
  // A line per method and setting; the setting is named only when the comparison has several.
  using Series = std::tuple<std::string, int64_t, int64_t>;
  std::set<std::pair<int64_t, int64_t>> settings;
  for (const auto& s : summary) settings.insert({s.rounds, s.finetune_steps});
  std::vector<Series> order;
  std::map<Series, std::vector<const CompareSummary*>> by_series;
  for (const auto& s : summary) {
    const Series key{s.method, s.rounds, s.finetune_steps};
    if (by_series.find(key) == by_series.end()) order.push_back(key);
    by_series[key].push_back(&s);
  }
  const bool error_bars =
      std::any_of(summary.begin(), summary.end(), [](const CompareSummary& s) { return s.seeds > 1; });
  std::string data;
  std::string plots;
  std::vector<std::string> levels;  // the dense control of each setting, a level line
  int block = 0;
  const auto add = [&](const std::string& clause) { plots += (plots.empty() ? "" : ", ") + clause; };
  for (const auto& key : order) {
    const auto& [method, rounds, steps] = key;
    const std::string title = settings.size() > 1 ? fmt::format("{} r{} f{}", method, rounds, steps) : method;
    if (method == kDenseControl) {
      for (const auto* s : by_series[key]) {
        levels.push_back(fmt::format("{:.6f} with lines dashtype 3 title {}", 100 * s->top1,
                                     gp(title + (steps > 0 ? " fine-tuned" : " control"))));
      }
      continue;
    }
    data += "# " + title + "\n";
    for (const auto* s : by_series[key]) {
      data += fmt::format("{:.6f},{:.6f},{:.6f}\n", s->sparsity_achieved, 100 * s->top1,
                          std::isfinite(s->top1_sd) ? 100 * s->top1_sd : 0.0);
    }
    data += "\n\n";
    add(fmt::format("{} index {} using {} title {}", gp("top1_vs_sparsity.dat"), block,
                    error_bars ? "1:2:3 with yerrorlines" : "1:2 with linespoints", gp(title)));
    ++block;
  }
  add(fmt::format("{:.6f} with lines dashtype 2 title 'dense'", 100 * dense_top1));
  for (const auto& level : levels) add(level);
  // Level lines alone (the control the only method) span the range of sparsity.
  const std::string range = block == 0 ? "set xrange [0:1]\n" : "";
  const std::string script = fmt::format(
      "set title 'Top-1 against sparsity (dense {:.2f}%{})'\nset xlabel 'sparsity'\nset ylabel 'top-1 (%)'\n"
      "{}plot {}\n",
      100 * dense_top1, error_bars ? "; mean and sd over seeds" : "", range, plots);
  return render(dir, "top1_vs_sparsity", data, script);
}

bool plot_layer_sparsity(const std::string& dir, const std::vector<std::pair<std::string, Plan>>& plans,
                         const std::string& title) {
  if (plans.empty()) return true;  // nothing to draw
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
    plots += fmt::format("{}{} using 1:{} with linespoints title {}", m ? ", " : "", gp("layer_sparsity.dat"),
                         m + 2, gp(plans[m].first));
  }
  std::string labels;
  for (size_t i = 0; i < layers.size(); ++i)
    labels += fmt::format("{}{} {}", i ? ", " : "", gp(layers[i].name), i);
  const std::string script = fmt::format(
      "set title {}\nset ylabel 'layer sparsity'\nset yrange [0:1.02]\nset xtics ({}) rotate by 60 right "
      "font ',7'\n"
      "set key autotitle columnhead\nplot {}\n",
      gp(title), labels, plots);
  return render(dir, "layer_sparsity", data, script);
}

bool plot_curves(const std::string& dir, const CurveSet& curves) {
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
    plots += fmt::format("{}{} index {} using 1:2 with lines title {}", i ? ", " : "", gp("rd_curves.dat"), i,
                         gp(layer.name));
  }
  const std::string script = fmt::format(
      "set title {}\nset xlabel 'layer sparsity'\nset ylabel 'output distortion'\n"
      "set logscale y\nset key font ',7'\nplot {}\n",
      gp(fmt::format("Rate-distortion curves ({} distortion, {})", curves.metric, curves.calibration)),
      plots);
  return render(dir, "rd_curves", data, script);
}

bool plot_additivity(const std::string& dir, const std::vector<double>& predicted,
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
    plots += fmt::format("{}{} index {} using 1:2 with points pointtype 7 title {}", block ? ", " : "",
                         gp("additivity.dat"), block, gp(kind));
    ++block;
  }
  const std::string script = fmt::format(
      "set title {}\nset xlabel 'sum of per-layer curve distortions'\nset ylabel 'measured joint "
      "distortion'\n"
      "set logscale xy\nplot {}, x with lines dashtype 2 title 'y = x'\n",
      gp(title), plots);
  return render(dir, "additivity", data, script);
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
