// The pruning schedule behind `rdprune run` and `rdprune compare`: rounds of
// (curves ->) allocate -> prune -> [batch-norm recalibration] -> fine-tune -> evaluate, with masks
// that only grow. Each round leaves its artifacts in a directory; a rerun resumes after the last
// finished round.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rdprune/allocate.h"
#include "rdprune/dataset.h"
#include "rdprune/distortion.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"
#include "rdprune/refine.h"
#include "rdprune/train.h"

namespace rdprune {

struct PipelineOptions {
  std::string method = "rd";           // rd | global | lamp | uniform | uniform+ | erk
  std::string label;                   // what progress lines call the method; empty: the method
  RdOptions rd;                        // budget, target, constraints (shared with the baselines)
  int64_t rounds = 1;                  // 1 = one-shot
  std::string schedule = "geometric";  // geometric: 1-(1-a)^r reaching the target; linear: S*r/R
  CurveOptions curves;                 // rd only
  int64_t refine = 2;                  // rd: passes of curves re-measured around the plan
  // rd: allocators whose plans compete with rd's own as the start of refinement (default: all)
  std::vector<std::string> refine_from = {"global", "lamp", "uniform", "uniform+", "erk"};
  // rd: fine-tuning steps each candidate plan gets before refinement judges it (Recovery);
  // -1: min(finetune.steps, kAutoRecoverySteps), so plans are judged as pruned when no fine-tuning follows
  int64_t recovery_steps = -1;
  // rd: blends of the lowest-measuring start with the next-lowest ones (refine_rd); -1: 2 when
  // plans are judged after recovery, else 0
  int64_t blends = -1;
  // rd: rounds of exchanges between every ordered pair of layers after the passes (refine_rd); -1:
  // kAutoExchanges when plans are judged after recovery and a round judges at most
  // kAutoExchangeMoves plans, else 0
  int64_t exchanges = -1;
  // rd: training images, after the calibration ones, that plans are measured on (fewer when the
  // split ends sooner); -1: kAutoJudgeSize when plans are judged after recovery (kAutoPathJudgeSize
  // when judged along paths), 0 when judged as pruned; 0: the calibration set
  int64_t judge_size = -1;
  // rd: what plans are judged by on judging images (Recovery::judge_by): distortion | loss | error |
  // auto (kAutoJudgeBy when plans are judged after recovery, kAutoPathJudgeBy along paths on
  // judging images, kAutoPrunedJudgeBy as pruned); plans judged as pruned on the calibration set
  // are always judged by their distortion
  std::string judge_by = "auto";
  // rd, in every round before the last: judge each rule's plan at the round's own target (round) or
  // at the final target, taking the chosen rule's plan at the round's target (final; refinement
  // passes then run in the last round only), or as final and then follow the best `paths` rules
  // through every later round, taking the rule whose path ends lowest (path); auto: kAutoJudgeAt when
  // plans are judged after recovery, else kAutoPrunedJudgeAt. One round, or no allocator to start
  // from (refine_from empty): always round.
  std::string judge_at = "auto";
  // rd with judge_at "path": how many rules, lowest-measuring at the final target first, are
  // followed to the end and judged; -1: every rule
  int64_t paths = -1;
  int64_t calib_size = 256;  // calibration samples (rd curves, batch-norm recalibration)
  // The last N training images: a validation split that no method's fine-tuning (nor rd's recovery)
  // sees; rd judges recovered plans on the first judge_count of them instead of on the training
  // images after the calibration ones. 0: none held out.
  int64_t holdout = 0;
  bool synthetic = false;  // zero-data calibration: N(0,1) inputs
  uint64_t seed = 0;
  TrainOptions finetune;  // steps = 0: no fine-tuning
  bool bn_recalibrate = false;
  int64_t eval_limit = 0;  // 0 = the whole test split
  std::string out_dir;     // empty: keep nothing
  bool progress = true;
};

constexpr int64_t kAutoRecoverySteps = 100;
constexpr int64_t kAutoBlends = 2;
// Exchanges judge every ordered pair of layers, layers * (layers - 1) plans a round, each after
// recovery: by default only where that is at most kAutoExchangeMoves (8 layers or fewer).
constexpr int64_t kAutoExchanges = 2;
constexpr int64_t kAutoExchangeMoves = 64;
constexpr int64_t kAutoJudgeSize = 1024;
constexpr const char* kAutoJudgeBy = "distortion";
// With more than one round and plans judged after recovery, every rule's path is followed and
// judged by the error on more images; judged as pruned, rounds are judged at the final target
// (docs/results.md, "Judging by the error and judging whole paths").
constexpr const char* kAutoJudgeAt = "path";
constexpr const char* kAutoPrunedJudgeAt = "final";
constexpr int64_t kAutoPathJudgeSize = 16384;
constexpr const char* kAutoPathJudgeBy = "error";
// Plans judged as pruned on judging images (--judge-size N): by their distortion unless told.
constexpr const char* kAutoPrunedJudgeBy = "distortion";

void validate(const PipelineOptions& options);

// The recovery steps `options` ask for, with -1 resolved.
int64_t recovery_steps(const PipelineOptions& options);

// The blends `options` ask for, with -1 resolved.
int64_t blend_count(const PipelineOptions& options);

// The rounds of exchanges `options` ask for on a model with `layers` prunable layers, with -1
// resolved.
int64_t exchange_count(const PipelineOptions& options, size_t layers);

// The judging images `options` ask for, with -1 resolved.
int64_t judge_count(const PipelineOptions& options);

// What plans are judged by, with auto resolved: "distortion", "loss" or "error".
std::string judge_metric(const PipelineOptions& options);

// Where rounds before the last judge plans, with auto resolved: "round", "final" or "path".
std::string judge_target(const PipelineOptions& options);

// Sparsity target of round r (1-based) of `rounds` reaching `final_target`.
double round_target(const std::string& schedule, double final_target, int64_t r, int64_t rounds);

struct RoundResult {
  int64_t round = 0;
  double sparsity_target = 0;
  double sparsity_achieved = 0;
  double flops_sparsity_achieved = 0;
  std::optional<double> predicted_distortion;
  // Joint distortion of the plan, measured on the calibration set in the curves' metric (with
  // batch statistics under --bn-recalibrate): the quantity rd minimises, for every method alike.
  std::optional<double> measured_distortion;
  std::vector<RefineStep> refine;  // rd: every start and pass of refinement, the chosen one marked
  EvalResult pruned;               // before fine-tuning
  EvalResult finetuned;            // after fine-tuning (equal to `pruned` when there was none)
  double curve_seconds = 0;
  bool finetune_from_judgement = false;  // rd: the network kept is the one its judgement fine-tuned
  double judged_at = 0;                  // rd with refinement: the sparsity target `refine` judged plans at
  bool resumed = false;
};

// In every round's directory: the final model's per-image top-1 outcomes on the test split.
inline constexpr const char* kTestHitsFile = "test_hits.txt";

struct PipelineResult {
  std::vector<RoundResult> rounds;
  const RoundResult& last() const { return rounds.back(); }
};

// Runs the schedule on `network`, which may be replaced by a resumed round's model.
PipelineResult run_pipeline(std::unique_ptr<Network>& network, const DatasetSplits& data,
                            const PipelineOptions& options);

}  // namespace rdprune
