#include "rdprune/report.h"

#include <cmath>
#include <filesystem>

#include <unistd.h>

#include <gtest/gtest.h>

#include "rdprune/atomic_file.h"

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
  const std::vector<CompareRow> rows = {cell("rd", 0.9, 0, 0.80), cell("rd", 0.9, 1, 0.84),
                                        cell("lamp", 0.9, 0, 0.79), cell("lamp", 0.9, 1, 0.81)};
  write_compare_tables(dir.string(), rows, 0.9, 10000);
  const std::string csv = read_file((dir / "results.csv").string());
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "method,sparsity_target,sparsity_achieved,flops_kept_percent,rounds,finetune_steps,top1_before_"
            "finetune,top1,top5,loss,dense_top1,measured_distortion,seed");
  EXPECT_NE(csv.find("\nrd,0.9000,0.900200,50.0000,2,100,0.740000,0.840000,0.000000,0.000000,0.900000,,1\n"),
            std::string::npos)
      << csv;
  const std::string md = read_file((dir / "results.md").string());
  EXPECT_NE(md.find("Dense top-1: 90.00% on 10000 test images (the binomial standard error of one top-1 "
                    "figure there: 0.30 points)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| measured distortion | seed |"), std::string::npos) << md;
  // rd 82.00% (sd 2.83) against lamp: differences +1 and +3 points, mean +2, standard error 1.
  EXPECT_NE(md.find("| rd | 0.90 | 2 | 100 | 2 | 0.9001 | 82.00% | 2.83 | lamp | +2.00 ± 1.00 |"),
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
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace rdprune
