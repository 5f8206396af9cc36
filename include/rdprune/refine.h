// rd around a plan. Per-layer curves are measured with every other layer dense, yet the plan
// prunes them all together, and the distortions of layers pruned together do not add up exactly
// (docs/results.md). Refinement is a local search on the measured joint distortion: it re-measures
// every curve with the other layers pruned as the current plan says, solves again, and moves only
// to a plan that measures lower. When the unbounded solution measures worse (the curves describe
// the neighbourhood of the current plan, not the whole space), it solves again with every layer
// held within a shrinking factor of its current kept count (a trust region). The search starts
// from the lowest-measuring of several plans: rd's own and, with --refine-from, other allocators',
// or a blend between the lowest and a next-lowest. After the passes, exchanges try moving a share
// of one layer's kept weights to another, for every ordered pair of layers.
// When fine-tuning follows, plans are judged by what it makes of them (Recovery).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "rdprune/allocate.h"
#include "rdprune/curves.h"
#include "rdprune/dataset.h"
#include "rdprune/distortion.h"
#include "rdprune/network.h"
#include "rdprune/plan.h"
#include "rdprune/train.h"

namespace rdprune {

struct RefineStep {
  // The plan the search started from: "rd", an allocator's name or a blend "a+b"; an exchange
  // "<start> <from>><to>", naming the layers that gave and took weights
  std::string start;
  // 0: a starting plan as it is; k: solved on the k-th curves; an exchange: the curve passes run
  // plus its round of exchanges
  int64_t pass = 0;
  double trust = 0;      // the factor each layer's kept count could move by (0: unbounded)
  double exchanged = 0;  // an exchange: the share of the giving layer's kept weights moved (0: none)
  // The plan's joint distortion on the calibration set as pruned, or when judged_by_recovery its
  // judgement on the judging images (on the calibration set without them), after `recovery_steps`
  // steps of fine-tuning when there were any
  double measured = 0;
  int64_t recovery_steps = 0;
  // What `measured` is: "distortion", or judged_by_recovery "loss" or "error" (1 - top-1).
  std::string judged_by = "distortion";
  double sparsity = 0;  // the plan's weight sparsity
  // 0: this plan judged alone; k: the plan that ends a path of k rounds (the pipeline's
  // --judge-at path), each round pruned by the same rule
  int64_t path_rounds = 0;
  bool chosen = false;
};

struct RefineResult {
  Plan plan;                      // the chosen plan
  std::vector<RefineStep> steps;  // every plan measured, in order
  // Judged after recovery: the network the chosen plan's recovery left (what fine-tuning with the
  // recovery's options makes of the plan), so that the caller need not fine-tune it again.
  std::optional<NetworkState> recovered;
};

struct RefineStart {
  std::string name;  // "rd" for the plan from the curves alone
  Plan plan;
};

// Judging a plan by the network fine-tuning will make of it. At high sparsity the pruned network's
// outputs are near chance for every plan, and the plan that measures lowest before fine-tuning is
// not the one fine-tuning recovers best (docs/results.md). With steps > 0, each plan is applied,
// batch norm re-estimated on the calibration set when `recalibrate_bn`, the network fine-tuned for
// `steps` steps of `train` (the round's own optimizer and learning rate, masks held, the same seed
// and so the same batches for every plan) and then measured in evaluation mode, on `judge` images
// when given: the calibration set is small and a plan's recovered distortion on it is a noisy
// estimate of how the network does on other images (docs/results.md, "Judging on more images").
// With steps 0 and `judge` images, each plan is judged as pruned the same way: batch norm
// re-estimated when `recalibrate_bn`, then measured on `judge` in evaluation mode, the network
// evaluation sees (docs/results.md, "Judging pruned plans on more images").
struct Recovery {
  int64_t steps = 0;              // 0: judge plans as pruned
  const Dataset* data = nullptr;  // the fine-tuning data
  TrainOptions train;             // `steps` replaces train.steps
  bool recalibrate_bn = false;
  const Dataset* judge = nullptr;  // the images a recovered network is measured on; null: calibration
  bool keep_recovered = false;     // refine_rd: keep the chosen plan's recovered network
  // What a recovered network is judged by: "distortion" (against the unpruned network's outputs,
  // in the curves' metric), "loss" (mean cross-entropy against the judging images' labels) or
  // "error" (the fraction of them it misclassifies). At low sparsity fine-tuning can take the
  // network past the unpruned one, which the distortion counts against it (docs/results.md,
  // "Judging by the loss"); at high sparsity the plan whose recovered network measures the lowest
  // distortion or loss need not classify best (docs/results.md, "Judging by the error and judging
  // whole paths").
  std::string judge_by = "distortion";
};

// True for the judgements measured against labels ("loss", "error") rather than against the
// unpruned network's outputs.
bool judged_by_labels(const std::string& judge_by);

// True when plans are judged as `recovery` says (fine-tuned for recovery.steps, possibly none, and
// measured by recovery.judge_by on recovery.judge or the calibration set): recovery.steps > 0 or
// recovery.judge given. False: judged by their joint_distortion as pruned, on the calibration set.
bool judged_by_recovery(const Recovery& recovery);

// What a plan is judged against under `recovery` (judge_plan): the network's reference_outputs, as
// it is now, on recovery.judge (or on `calibration` without one) when judged_by_recovery, on
// `calibration` otherwise; an undefined
// tensor when the judgement is by labels, which needs none. O(one pass over those images), or O(1)
// by labels.
torch::Tensor judging_reference(Network& network, const Dataset& calibration, const Recovery& recovery,
                                int64_t batch_size);

// The distortion against `reference` (the unpruned network's reference_outputs on recovery.judge,
// or on `calibration` without one), or with recovery.judge_by "loss" the mean cross-entropy on
// those images' labels (with "error" 1 - top-1 on them), left after `recovery` fine-tunes the network pruned
// by `plan` (batch-norm statistics re-estimated on `calibration` first when recovery.recalibrate_bn;
// with recovery.steps 0 no fine-tuning, the network as pruned). The
// network's parameters, buffers and masks are restored afterwards; `recovered`, when given,
// receives them as recovery left them. O(recovery.steps training steps + one pass over the
// judging images).
double recovered_distortion(Network& network, const Dataset& calibration, const Plan& plan,
                            const std::string& metric, int64_t batch_size, const torch::Tensor& reference,
                            const Recovery& recovery, NetworkState* recovered = nullptr);

// How refine_rd judges `plan`: when judged_by_recovery its recovered_distortion (`recovered` as
// there), otherwise its joint_distortion as pruned (batch statistics with
// curve_options.recalibrate_bn); `reference` from judging_reference. The network is left as it was.
double judge_plan(Network& network, const Dataset& calibration, const Plan& plan,
                  const CurveOptions& curve_options, const torch::Tensor& reference, const Recovery& recovery,
                  NetworkState* recovered = nullptr);

// What a judgement by `judged_by` is called in progress lines: "<metric> distortion", "loss" or
// "error".
std::string judgement_name(const std::string& judged_by, const std::string& metric);

using RefineCurvesSink = std::function<void(const std::string& start, int64_t pass, const CurveSet&)>;

// Measures every start's plan and keeps the lowest; then measures `blends` plans halfway (in log
// density, blend_plans) between the lowest start and each of the next-lowest, and keeps the lowest
// of all (a blend is named "a+b" in the steps); then up to `passes` times: measures curves
// around the current plan, allocates under `rd` (unbounded, then within factors 4, 2 and 1.25 of
// each layer's kept count) and moves to the first plan that measures lower; stops early when none
// does; then `exchanges` rounds, each measuring, from the lowest plan so far, exchange_plan for
// every ordered pair of layers with a share of kExchangeFraction (halved after a round in which none
// measures lower; a step named "<start> <from>><to>", its pass the curve passes run plus the round).
// Returns the lowest-measuring plan of all (the earliest on ties), which never measures worse
// than any start. `on_curves` sees each pass's curves (to save them). When judged_by_recovery,
// every plan is judged by recovered_distortion instead of joint_distortion, and with
// `recovery.keep_recovered` the result keeps the chosen plan's recovered network.
// O(passes * curve measurement + starts + blends + 4 * passes + exchanges * layers^2 joint
// measurements).
RefineResult refine_rd(Network& network, const Dataset& calibration,
                       const std::string& calibration_description, const std::vector<LayerInfo>& infos,
                       const CurveOptions& curve_options, const RdOptions& rd,
                       const std::vector<RefineStart>& starts, int64_t passes,
                       const RefineCurvesSink& on_curves = {}, const Recovery& recovery = {},
                       int64_t blends = 0, int64_t exchanges = 0);

// The share of a layer's kept weights an exchange moves at first (refine_rd).
constexpr double kExchangeFraction = 0.25;

// The indices of `steps` from the lowest measured to the highest (the earlier first on ties).
std::vector<size_t> lowest_first(const std::vector<RefineStep>& steps);

// The halfway blend of two plans refine_rd measures (blend_plans with weight 0.5), or nullopt when
// it cannot meet the budget or breaks rd's constraints.
std::optional<Plan> blend_of(const Plan& a, const Plan& b, const std::vector<LayerInfo>& infos,
                             const RdOptions& rd);

// The plan refine_rd's rule `name` gives among `starts` (at their target): a start's own plan, or
// for a blend "a+b" the blend of a's and b's plans as refine_rd makes it; nullopt when there is no
// such start here, or the blend cannot meet the budget within rd's constraints. Lets a search
// judged at one target be carried to another (the pipeline's --judge-at final).
std::optional<Plan> rule_plan(const std::string& name, const std::vector<RefineStart>& starts,
                              const std::vector<LayerInfo>& infos, const RdOptions& rd);

// True when rule `name` plans from rd's curves: rd itself or a blend with it ("rd+erk", "lamp+rd").
// A rule that does not can be planned without measuring curves.
bool rule_uses_rd(const std::string& name);

}  // namespace rdprune
