#include "rdprune/report.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <unistd.h>

#include <gtest/gtest.h>

#include "rdprune/atomic_file.h"
#include "rdprune/error.h"
#include "rdprune/hits.h"

namespace rdprune {
namespace {

CompareRow cell(const std::string& method, double target, uint64_t seed, double top1, int64_t steps = 100) {
  CompareRow row;
  row.method = method;
  row.sparsity_target = target;
  row.sparsity_achieved = target + 0.0002 * static_cast<double>(seed);
  row.flops_kept = 0.5;
  row.rounds = 2;
  row.finetune_steps = steps;
  row.top1_pruned = top1 - 0.1;
  row.top1 = top1;
  row.measured_distortion = std::nan("");
  row.seed = seed;
  return row;
}

const CompareSummary& find(const std::vector<CompareSummary>& summary, const std::string& method,
                           double target, int64_t steps = 100) {
  for (const auto& s : summary) {
    if (s.method == method && s.sparsity_target == target && s.finetune_steps == steps) return s;
  }
  throw std::runtime_error("no summary for " + method);
}

TEST(Report, SummarisesSeedsAndPairsTheLeadWithTheBestOtherMethod) {
  // rd 0.80, 0.84, 0.82 and lamp 0.79, 0.81, 0.80 over seeds 0-2 at 0.9; global 0.70, 0.72.
  const std::vector<CompareRow> rows = {
      cell("rd", 0.9, 0, 0.80),     cell("rd", 0.9, 1, 0.84),     cell("rd", 0.9, 2, 0.82),
      cell("lamp", 0.9, 0, 0.79),   cell("lamp", 0.9, 1, 0.81),   cell("lamp", 0.9, 2, 0.80),
      cell("global", 0.9, 0, 0.70), cell("global", 0.9, 2, 0.72), cell("rd", 0.5, 0, 0.9)};
  const auto summary = summarize_compare(rows);
  ASSERT_EQ(summary.size(), 4u);
  // By target, then the methods in the order they first appear.
  EXPECT_EQ(summary[0].sparsity_target, 0.5);
  EXPECT_EQ(summary[1].method, "rd");
  EXPECT_EQ(summary[2].method, "lamp");
  EXPECT_EQ(summary[3].method, "global");

  const CompareSummary& rd = find(summary, "rd", 0.9);
  EXPECT_EQ(rd.seeds, 3);
  EXPECT_NEAR(rd.top1, 0.82, 1e-12);
  EXPECT_NEAR(rd.top1_sd, 0.02, 1e-12);  // sample sd of 0.80, 0.84, 0.82
  EXPECT_NEAR(rd.sparsity_achieved, 0.9002, 1e-12);
  EXPECT_NEAR(rd.top1_pruned, 0.72, 1e-12);
  EXPECT_EQ(rd.rival, "lamp");
  // Differences 0.01, 0.03, 0.02: mean 0.02, sd 0.01, standard error 0.01 / sqrt(3).
  EXPECT_NEAR(rd.lead, 0.02, 1e-12);
  EXPECT_NEAR(rd.lead_se, 0.01 / std::sqrt(3.0), 1e-12);

  const CompareSummary& lamp = find(summary, "lamp", 0.9);
  EXPECT_EQ(lamp.rival, "rd");
  EXPECT_NEAR(lamp.lead, -0.02, 1e-12);
  // global ran seeds 0 and 2 only: paired with rd on those two (differences -0.10, -0.10).
  const CompareSummary& global = find(summary, "global", 0.9);
  EXPECT_EQ(global.rival, "rd");
  EXPECT_NEAR(global.lead, -0.10, 1e-12);
  EXPECT_NEAR(global.lead_se, 0, 1e-12);
  // Alone in its setting: no rival, no lead, and one seed has no spread.
  const CompareSummary& alone = find(summary, "rd", 0.5);
  EXPECT_TRUE(alone.rival.empty());
  EXPECT_TRUE(std::isnan(alone.lead));
  EXPECT_TRUE(std::isnan(alone.lead_se));
  EXPECT_TRUE(std::isnan(alone.top1_sd));
}

TEST(Report, RivalsComeFromTheSameSettingAndTiesGoToTheFirstListed) {
  const std::vector<CompareRow> rows = {cell("rd", 0.9, 0, 0.80, 10), cell("lamp", 0.9, 0, 0.80, 10),
                                        cell("erk", 0.9, 0, 0.80, 10), cell("lamp", 0.9, 0, 0.95, 20),
                                        cell("rd", 0.9, 0, 0.85, 20)};
  const auto summary = summarize_compare(rows);
  ASSERT_EQ(summary.size(), 5u);
  EXPECT_EQ(find(summary, "rd", 0.9, 10).rival, "lamp");
  EXPECT_EQ(find(summary, "lamp", 0.9, 10).rival, "rd");
  EXPECT_EQ(find(summary, "erk", 0.9, 10).rival, "rd");
  EXPECT_DOUBLE_EQ(find(summary, "erk", 0.9, 10).lead, 0);
  // 20 steps is another setting: lamp's 0.95 there is not rd's rival at 10 steps.
  EXPECT_EQ(find(summary, "rd", 0.9, 20).rival, "lamp");
  EXPECT_NEAR(find(summary, "rd", 0.9, 20).lead, -0.10, 1e-12);
  // One seed: a lead, no standard error.
  EXPECT_TRUE(std::isnan(find(summary, "rd", 0.9, 20).lead_se));
}

TEST(Report, TheDenseControlIsNobodysRivalAndEveryMethodIsMeasuredAgainstIt) {
  // The control at target 0 for 10 and 20 steps; rd and lamp at 0.9 for 10 steps, rd alone at 20.
  std::vector<CompareRow> rows = {cell("rd", 0.9, 0, 0.80, 10),    cell("rd", 0.9, 1, 0.84, 10),
                                  cell("lamp", 0.9, 0, 0.79, 10),  cell("lamp", 0.9, 1, 0.81, 10),
                                  cell("dense", 0.0, 0, 0.83, 10), cell("dense", 0.0, 1, 0.86, 10),
                                  cell("dense", 0.0, 0, 0.90, 20), cell("rd", 0.9, 0, 0.87, 20)};
  const auto summary = summarize_compare(rows);
  ASSERT_EQ(summary.size(), 5u);
  const CompareSummary& control = find(summary, "dense", 0.0, 10);
  EXPECT_TRUE(control.rival.empty());
  EXPECT_TRUE(std::isnan(control.lead));
  EXPECT_TRUE(std::isnan(control.vs_dense));
  EXPECT_NEAR(control.top1, 0.845, 1e-12);
  // rd's rival is lamp, not the better control; against the control, differences -0.03 and -0.02.
  const CompareSummary& rd = find(summary, "rd", 0.9, 10);
  EXPECT_EQ(rd.rival, "lamp");
  EXPECT_NEAR(rd.lead, 0.02, 1e-12);
  EXPECT_NEAR(rd.vs_dense, -0.025, 1e-12);
  EXPECT_NEAR(rd.vs_dense_se, 0.005, 1e-12);  // sd 0.00707 / sqrt(2)
  EXPECT_NEAR(find(summary, "lamp", 0.9, 10).vs_dense, -0.045, 1e-12);
  // At 20 steps: the 20-step control, one seed, no rival.
  const CompareSummary& longer = find(summary, "rd", 0.9, 20);
  EXPECT_TRUE(longer.rival.empty());
  EXPECT_NEAR(longer.vs_dense, -0.03, 1e-12);
  EXPECT_TRUE(std::isnan(longer.vs_dense_se));
  // Without a control for a setting, no figure.
  rows.erase(rows.begin() + 6);
  EXPECT_TRUE(std::isnan(find(summarize_compare(rows), "rd", 0.9, 20).vs_dense));
}

TEST(Report, PlotsRunWithoutAShellAndAreNeverLeftHalfDrawn) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot is not installed";
  const auto root =
      std::filesystem::temp_directory_path() / ("rdprune-test-plots-" + std::to_string(::getpid()));
  std::filesystem::remove_all(root);
  // A directory and a title that would end a quoted string and run a command through a shell.
  const auto dir = root / "a'b;touch INJECTED;'c";
  std::filesystem::create_directories(dir);
  plot_additivity(dir.string(), {1, 2, 3}, {1.5, 2.5, 2.9}, {"rd", "rd", "random"},
                  "it's $(touch INJECTED2)");
  EXPECT_TRUE(std::filesystem::exists(dir / "additivity.png"));
  EXPECT_FALSE(std::filesystem::exists("INJECTED"));
  EXPECT_FALSE(std::filesystem::exists(dir / "INJECTED2"));
  EXPECT_NE(read_file((dir / "additivity.gp").string()).find("set title 'it''s $(touch INJECTED2)'"),
            std::string::npos);
  // A plot gnuplot cannot draw (zero on log axes) leaves no PNG, not an empty one nor the old one.
  plot_additivity(dir.string(), {0, 0}, {0, 0}, {"rd", "rd"}, "zeros");
  EXPECT_FALSE(std::filesystem::exists(dir / "additivity.png"));
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << entry.path();
  std::filesystem::remove_all(root);
}

TEST(Report, HitsFilesRoundTripAndRefuseDamage) {
  const std::vector<uint8_t> hits = {1, 0, 0, 1, 1};
  EXPECT_EQ(hits_to_text(hits), "rdprune.hits/1 5\n10011\n");
  EXPECT_EQ(hits_from_text(hits_to_text(hits), "h"), hits);
  EXPECT_EQ(hits_from_text("rdprune.hits/1 0\n\n", "h"), std::vector<uint8_t>());
  for (const char* bad :
       {"", "rdprune.hits/2 5\n10011\n", "rdprune.hits/1 6\n10011\n", "rdprune.hits/1 5\n1001",
        "rdprune.hits/1 5\n10021\n", "rdprune.hits/1 x\n10011\n", "rdprune.hits/1 5"}) {
    EXPECT_THROW(hits_from_text(bad, "test_hits.txt"), Error) << bad;
  }
}

TEST(Report, PairedDifferenceByHand) {
  // b = 2 images only mine classifies correctly, c = 1 only theirs: d = 1/5, variance (3/5 - d^2) / 5.
  const PairedDifference paired = paired_difference({1, 1, 0, 0, 1}, {1, 0, 1, 0, 0});
  EXPECT_NEAR(paired.difference, 0.2, 1e-12);
  EXPECT_NEAR(paired.standard_error, std::sqrt((0.6 - 0.04) / 5), 1e-12);
  // Identical outcomes: no difference and no sampling error.
  EXPECT_EQ(paired_difference({1, 0, 1}, {1, 0, 1}).standard_error, 0);
  EXPECT_THROW(paired_difference({1, 0}, {1}), Error);
  EXPECT_THROW(paired_difference({}, {}), Error);
  // Over seeds: a seed's disagreement that the other seed reverses on the same image cancels.
  const PairedDifference two = paired_difference_over_runs({{1, 0}, {0, 0}}, {{0, 0}, {1, 0}});
  EXPECT_EQ(two.difference, 0);
  EXPECT_EQ(two.standard_error, 0);
  // Two identical seeds give the one-seed figures.
  const PairedDifference same =
      paired_difference_over_runs({{1, 1, 0, 0, 1}, {1, 1, 0, 0, 1}}, {{1, 0, 1, 0, 0}, {1, 0, 1, 0, 0}});
  EXPECT_NEAR(same.standard_error, paired.standard_error, 1e-12);
  EXPECT_THROW(paired_difference_over_runs({{1}, {1}}, {{1}}), Error);
  EXPECT_THROW(paired_difference_over_runs({{1}, {1, 0}}, {{1}, {1, 0}}), Error);
}

TEST(Report, LeadErrorAddsTheTestImagesSampling) {
  // Two seeds; on each, rd and lamp disagree on images as below (4 images).
  std::vector<CompareRow> rows = {cell("rd", 0.9, 0, 0.75), cell("rd", 0.9, 1, 0.75),
                                  cell("lamp", 0.9, 0, 0.50), cell("lamp", 0.9, 1, 0.25)};
  rows[0].top1_hits = {1, 1, 1, 0};
  rows[1].top1_hits = {1, 1, 0, 1};
  rows[2].top1_hits = {1, 0, 1, 0};
  rows[3].top1_hits = {0, 0, 0, 1};
  const auto summary = summarize_compare(rows);
  const CompareSummary& rd = find(summary, "rd", 0.9);
  // Differences 0.25 and 0.50: lead 0.375, from the seeds sd 0.1768 / sqrt(2) = 0.125.
  EXPECT_NEAR(rd.lead, 0.375, 1e-12);
  EXPECT_NEAR(rd.lead_se_seeds, 0.125, 1e-12);
  // Image by image, seed 0: (1,1,1,0) - (1,0,1,0) = (0,1,0,0); seed 1: (1,1,0,1) - (0,0,0,1) =
  // (1,1,0,0). Averaged over the seeds: (0.5, 1, 0, 0), mean 0.375, mean square 0.3125.
  const double test = std::sqrt((0.3125 - 0.375 * 0.375) / 4);
  EXPECT_NEAR(rd.lead_se_test, test, 1e-12);
  EXPECT_NEAR(rd.lead_se, std::hypot(0.125, test), 1e-12);
  // Without outcomes for one of the pairs, the test part is unknown and the error is the seeds' alone.
  rows[3].top1_hits.clear();
  const CompareSummary partial = find(summarize_compare(rows), "rd", 0.9);
  EXPECT_TRUE(std::isnan(partial.lead_se_test));
  EXPECT_NEAR(partial.lead_se, 0.125, 1e-12);
  // One seed with outcomes: the test part alone.
  const std::vector<CompareRow> one = {rows[0], rows[2]};
  const CompareSummary single = find(summarize_compare(one), "rd", 0.9);
  EXPECT_TRUE(std::isnan(single.lead_se_seeds));
  EXPECT_NEAR(single.lead_se, std::sqrt((0.25 - 0.0625) / 4), 1e-12);
}

TEST(Report, BinomialStandardError) {
  EXPECT_NEAR(top1_standard_error(0.9, 10000), 0.003, 1e-12);  // sqrt(0.9 * 0.1 / 10000)
  EXPECT_NEAR(top1_standard_error(0.5, 100), 0.05, 1e-12);
  EXPECT_DOUBLE_EQ(top1_standard_error(1.0, 100), 0);
  EXPECT_TRUE(std::isnan(top1_standard_error(0.5, 0)));
}

TEST(Report, TablesCarryTheSeedAndTheLeadOverTheSeeds) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("rdprune-test-report-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::vector<CompareRow> rows = {cell("rd", 0.9, 0, 0.80), cell("rd", 0.9, 1, 0.84),
                                  cell("lamp", 0.9, 0, 0.79), cell("lamp", 0.9, 1, 0.81)};
  rows[1].seconds = 12.34;  // what the cell cost
  rows[1].train_steps = 250;
  rows[1].judge_train_steps = 50;
  rows[1].forward_samples = 4096;
  write_compare_tables(dir.string(), rows, 0.9, 10000);
  const std::string csv = read_file((dir / "results.csv").string());
  EXPECT_EQ(
      csv.substr(0, csv.find('\n')),
      "method,sparsity_target,sparsity_achieved,flops_kept_percent,rounds,finetune_steps,top1_before_"
      "finetune,top1,top5,loss,dense_top1,measured_distortion,seed,seconds,train_steps,judge_train_steps,"
      "forward_samples,reused_seconds");
  EXPECT_NE(
      csv.find("\nrd,0.9000,0.900200,50.0000,2,100,0.740000,0.840000,0.000000,0.000000,0.900000,,1,12.3,250,"
               "50,4096,0.0\n"),
      std::string::npos)
      << csv;
  const std::string md = read_file((dir / "results.md").string());
  EXPECT_NE(md.find("Dense top-1: 90.00% on 10000 test images (the binomial standard error of one top-1 "
                    "figure there: 0.30 points)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| measured distortion | seconds | train steps (judging) | forward samples | seed |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| - | 12 | 250 (50) | 4096 | 1 |"), std::string::npos) << md;
  // rd 82.00% (sd 2.83) against lamp: differences +1 and +3 points, mean +2, standard error 1.
  EXPECT_NE(md.find("| rd | 0.90 | 2 | 100 | 2 | 0.9001 | 82.00% | 2.83 | lamp | +2.00 ± 1.00 | 1.00 | - |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| lamp | 0.90 | 2 | 100 | 2 | 0.9001 | 80.00% | 1.41 | rd | -2.00 ± 1.00 |"),
            std::string::npos)
      << md;
  // One seed: no seed column, and no summary for a lone method.
  write_compare_tables(dir.string(), {cell("rd", 0.9, 0, 0.80)}, 0.9, 10000);
  const std::string alone = read_file((dir / "results.md").string());
  EXPECT_EQ(alone.find("seed"), std::string::npos) << alone;
  EXPECT_EQ(alone.find("best other"), std::string::npos) << alone;
  // With the dense control, even one seed of one method is summarised against it.
  write_compare_tables(dir.string(), {cell("rd", 0.9, 0, 0.80), cell("dense", 0.0, 0, 0.85)}, 0.9, 10000);
  const std::string control = read_file((dir / "results.md").string());
  EXPECT_NE(control.find("| rd | 0.90 | 2 | 100 | 1 | 0.9000 | 80.00% | - | - | - | - | - | -5.00 |"),
            std::string::npos)
      << control;
  EXPECT_NE(control.find("| dense | 0.00 | 2 | 100 | 1 |"), std::string::npos) << control;
  // The plot draws the control as a level line: alone, over the whole range of sparsity; without
  // fine-tuning it is named the control.
  plot_accuracy(dir.string(), summarize_compare({cell("dense", 0.0, 0, 0.85, 0)}), 0.9);
  const std::string alone_plot = read_file((dir / "top1_vs_sparsity.gp").string());
  EXPECT_NE(alone_plot.find("set xrange [0:1]\nplot 90.000000 with lines dashtype 2 title 'dense', "
                            "85.000000 with lines dashtype 3 title 'dense control'\n"),
            std::string::npos)
      << alone_plot;
  plot_accuracy(dir.string(), summarize_compare({cell("rd", 0.9, 0, 0.80), cell("dense", 0.0, 0, 0.85)}),
                0.9);
  const std::string plot = read_file((dir / "top1_vs_sparsity.gp").string());
  EXPECT_EQ(plot.find("xrange"), std::string::npos) << plot;
  EXPECT_NE(plot.find("title 'rd', 90.000000 with lines dashtype 2 title 'dense', 85.000000 with lines "
                      "dashtype 3 title 'dense fine-tuned'\n"),
            std::string::npos)
      << plot;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace rdprune
