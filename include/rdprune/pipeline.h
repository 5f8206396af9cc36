// The pruning schedule behind `rdprune run` and `rdprune compare`: rounds of allocate -> prune ->
// [batch-norm recalibration] -> fine-tune -> evaluate, with masks that only grow. The allocator is
// whichever method the options name (rdprune/allocator.h). Each round leaves its artifacts in a
// directory; a rerun resumes after the last finished round (rdprune/run_record.h).
#pragma once

#include "rdprune/layering.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rdprune/allocate.h"
#include "rdprune/allocator.h"
#include "rdprune/dataset.h"
#include "rdprune/network.h"
#include "rdprune/process_group.h"
#include "rdprune/refine.h"
#include "rdprune/sink.h"
#include "rdprune/train.h"

namespace rdprune {

RDPRUNE_LAYER(5, "schedule");

struct PipelineOptions {
  std::string method = "rd";  // rd | select | global | lamp | uniform | uniform+ | erk
  std::string label;          // what progress lines call the method; empty: the method
  // The preset the allocator settings were expanded from (recorded; the settings are what run).
  std::string preset = "default";
  RdOptions rd;  // budget, final target and per-layer constraints, for every method
  AllocatorSettings allocator = preset_settings("default");
  int64_t rounds = 1;                  // 1 = one-shot
  std::string schedule = "geometric";  // geometric: 1-(1-a)^r reaching the target; linear: S*r/R
  int64_t calib_size = 256;            // calibration samples: the first N training images
  // The last N training images: held out of all fine-tuning; select judges plans on them. 0: none.
  int64_t holdout = 0;
  bool synthetic = false;  // zero-data calibration: N(0,1) inputs
  LoadOptions load;        // how every round's model is loaded (embeddings as layers or not)
  uint64_t seed = 0;
  TrainOptions finetune;  // per round; steps = 0: no fine-tuning
  // Per round (index r - 1): steps added to that round's fine-tuning. compare's equal-compute
  // control gives a baseline the steps select spent judging plans.
  std::vector<int64_t> extra_finetune_steps;
  bool bn_recalibrate = false;
  int64_t eval_limit = 0;  // 0 = the whole test split
  std::string out_dir;     // empty: keep nothing
  Sink* sink = nullptr;    // progress; null: silent
  // Several processes (null: one): the evaluations are shared out here; give the same group to
  // finetune.group and allocator.curves.group to share out fine-tuning and curves. Every process
  // reads out_dir to resume; rank 0 alone writes it.
  ProcessGroup* group = nullptr;
};

// Whether this process writes the run's files: rank 0 of `group`, or the only process.
bool writes_files(const ProcessGroup* group);

// Throws UsageError naming the option at fault.
void validate(const PipelineOptions& options);

// Sparsity target of round r (1-based) of `rounds` reaching `final_target`.
double round_target(const std::string& schedule, double final_target, int64_t r, int64_t rounds);

// What a round cost: wall time and the compute it spent on the network.
struct RoundCost {
  double seconds = 0;             // the whole round
  double allocation_seconds = 0;  // curves, search and judgements
  double finetune_seconds = 0;    // batch-norm recalibration and fine-tuning
  int64_t train_steps = 0;        // every optimizer step, judging included
  int64_t judge_train_steps = 0;  // the steps spent judging plans (select's recovery)
  int64_t forward_samples = 0;    // samples through a forward pass (training, measuring, evaluating)
  // Of seconds, allocation_seconds and forward_samples: curves taken from the cache, charged at
  // what measuring them cost (cells that share a cache each state their whole cost).
  double reused_seconds = 0;
  int64_t reused_forward_samples = 0;
};

struct RoundResult {
  int64_t round = 0;
  double sparsity_target = 0;
  double sparsity_achieved = 0;
  double flops_sparsity_achieved = 0;
  std::optional<double> predicted_distortion;
  // Joint distortion of the plan, measured on the calibration set in the curves' metric (with
  // batch statistics when bn_recalibrate): the quantity rd minimises, for every method alike.
  std::optional<double> measured_distortion;
  std::vector<RefineStep> steps;  // rd's refinement, select's search: every plan judged
  EvalResult pruned;              // before fine-tuning
  EvalResult finetuned;           // after fine-tuning (equal to `pruned` when there was none)
  RoundCost cost;
  bool finetune_from_judgement = false;  // select: the network kept is the one its judgement fine-tuned
  bool resumed = false;
};

struct PipelineResult {
  std::vector<RoundResult> rounds;
  const RoundResult& last() const { return rounds.back(); }
};

// Runs the schedule on `network`, which may be replaced by a resumed round's model.
PipelineResult run_pipeline(std::unique_ptr<Network>& network, const DatasetSplits& data,
                            const PipelineOptions& options);

}  // namespace rdprune
