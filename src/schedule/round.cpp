#include "round.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <torch/torch.h>

#include "rdprune/additivity.h"
#include "rdprune/atomic_file.h"
#include "rdprune/channels.h"
#include "rdprune/criterion.h"
#include "rdprune/hits.h"
#include "rdprune/masks.h"
#include "rdprune/run_record.h"
#include "rdprune/sample_order.h"

namespace rdprune {
namespace fs = std::filesystem;
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The allocator's view of this round.
AllocatorContext round_context(Network& network, const RoundInputs& in, const TrainOptions& finetune,
                               const fs::path& dir) {
  const PipelineOptions& o = in.options;
  AllocatorContext context(network);
  context.layers = layer_census(network, in.shape);
  context.calibration = &in.calibration;
  context.calibration_description = in.calibration_description;
  // Plans are judged by the network the evaluation will see: after recalibration, batch norm runs
  // on statistics of the pruned network (judged with the dense statistics, plans of collapsed
  // networks win).
  context.batch_statistics =
      o.allocator.curves.recalibrate_bn || (o.bn_recalibrate && !network.buffers().empty());
  context.tuning = &in.tuning;
  context.judging = &in.judging;
  context.finetune = finetune;
  context.recalibrate_bn = o.bn_recalibrate;
  context.sink = o.sink;
  if (!dir.empty()) {
    context.save_curves = [dir](const std::string& name, const CurveSet& curves) {
      write_file_atomic((dir / (name + ".json")).string(), to_json(curves));
    };
  }
  return context;
}

// a - b, field by field.
ComputeUsage minus(const ComputeUsage& a, const ComputeUsage& b) {
  return {a.forward_samples - b.forward_samples, a.train_steps - b.train_steps,
          a.reused_seconds - b.reused_seconds, a.reused_forward_samples - b.reused_forward_samples};
}

// A channel round's target is a fraction of the run's model, which earlier rounds made smaller: the
// same budget as a fraction of this round's network (`layers`, its census). At least 0, where the
// earlier rounds already met it.
double channel_target(const RoundInputs& in, const std::vector<LayerInfo>& layers, double target) {
  const BudgetKind budget = in.options.rd.budget;
  const double now = census_cost(layers).of(budget);
  return now > 0 ? std::max(0.0, 1.0 - (1.0 - target) * in.run_cost.of(budget) / now) : 0.0;
}

// Batch-norm recalibration and fine-tuning of the pruned network, and its evaluation after them.
void repair(Network& network, const RoundInputs& in, Allocation& allocation, TrainOptions finetune, int64_t r,
            RoundResult& round) {
  const PipelineOptions& o = in.options;
  const auto tuning_start = std::chrono::steady_clock::now();
  const int64_t extra =
      r <= static_cast<int64_t>(o.extra_finetune_steps.size()) ? o.extra_finetune_steps[r - 1] : 0;
  round.finetune_from_judgement = allocation.recovered.has_value() && extra == 0;
  if (round.finetune_from_judgement) {
    // The judgement ran this round's whole fine-tuning (same steps, data, options and seed): the
    // network it left is what fine-tuning the plan again would make.
    restore(network, *allocation.recovered);
    note(o.sink, fmt::format("round {}: the chosen plan was fine-tuned when it was judged", r));
  } else {
    if (o.bn_recalibrate) recalibrate_batch_norm(network, in.calibration);
    finetune.steps += extra;
    if (finetune.steps > 0) train(network, in.tuning, finetune);
  }
  round.cost.finetune_seconds = seconds_since(tuning_start);
  const bool repaired = o.bn_recalibrate || finetune.steps > 0 || round.finetune_from_judgement;
  round.finetuned = repaired ? evaluate(network, in.test, 256, nullptr, o.group) : round.pruned;
}

}  // namespace

CensusCost census_cost(const std::vector<LayerInfo>& layers) {
  CensusCost cost;
  for (const auto& layer : layers) {
    cost.weights += static_cast<double>(layer.weights);
    cost.flops += static_cast<double>(layer.weights) * std::max(0.0, layer.flops_per_weight);
  }
  return cost;
}

RoundResult run_round(std::unique_ptr<Network>& model, const RoundInputs& in, Allocator& allocator, int64_t r,
                      double target, const fs::path& dir) {
  const PipelineOptions& o = in.options;
  const bool channels = o.allocator.granularity == "channel";
  const auto start = std::chrono::steady_clock::now();
  ComputeUsage before = model->usage();
  RoundResult round;
  round.round = r;
  round.sparsity_target = target;
  // This round's fine-tuning; select's recovery judgements run the same steps from the same seed.
  TrainOptions finetune = o.finetune;
  finetune.sink = o.sink;
  finetune.seed = derive_seed(o.finetune.seed, static_cast<uint64_t>(r));
  // wanda's scores weigh each weight by its input's norm on this round's network.
  if (o.allocator.criterion == "wanda") {
    model->set_criterion("wanda", input_feature_norms(*model, in.calibration, o.allocator.curves.batch_size));
  }
  AllocatorContext context = round_context(*model, in, finetune, dir);
  RdOptions budget = o.rd;
  budget.sparsity_target = channels ? channel_target(in, context.layers, target) : target;
  Allocation allocation = allocator.allocate(context, budget);
  const double reused_seconds = model->usage().reused_seconds - before.reused_seconds;
  round.cost.allocation_seconds = seconds_since(start) + reused_seconds;
  round.cost.judge_train_steps = model->usage().train_steps - before.train_steps;
  Plan& plan = allocation.plan;
  plan.fingerprint = fingerprint(*model);  // the model the plan was made for: this round's start
  if (!channels) plan.criterion = model->criterion();
  if (!dir.empty()) write_file_atomic((dir / "plan.json").string(), to_json(plan));
  round.steps = std::move(allocation.steps);
  round.measured_distortion = joint_distortion(*model, in.calibration, plan, o.allocator.curves.metric,
                                               o.allocator.curves.batch_size, context.batch_statistics);
  apply_plan(*model, plan, allocator.name() + " plan");
  round.sparsity_achieved =
      channels ? 1.0 - plan.kept_weights() / in.run_cost.weights : plan.sparsity_achieved();
  round.flops_sparsity_achieved = !channels               ? plan.flops_sparsity_achieved()
                                  : in.run_cost.flops > 0 ? 1.0 - plan.kept_flops() / in.run_cost.flops
                                                          : 0.0;
  round.predicted_distortion = plan.predicted_distortion;
  round.pruned = evaluate(*model, in.test, 256, nullptr, o.group);
  if (channels) {
    // From here on the round works on the smaller network, which counts on from what the round spent.
    std::unique_ptr<Network> smaller = remove_pruned_channels(*model);
    before = minus(smaller->usage(), minus(model->usage(), before));
    model = std::move(smaller);
  }
  repair(*model, in, allocation, finetune, r, round);
  round.cost.seconds = seconds_since(start) + reused_seconds;
  round.cost.train_steps = model->usage().train_steps - before.train_steps;
  round.cost.reused_seconds = reused_seconds;
  round.cost.reused_forward_samples = model->usage().reused_forward_samples - before.reused_forward_samples;
  round.cost.forward_samples =
      model->usage().forward_samples - before.forward_samples + round.cost.reused_forward_samples;
  note(o.sink,
       fmt::format(
           "round {}/{}: {} target {:.4f}, sparsity {:.4f}, top-1 {:.2f}% pruned, {:.2f}% after repair", r,
           o.rounds, o.label.empty() ? o.method : o.label, target, round.sparsity_achieved,
           100 * round.pruned.top1, 100 * round.finetuned.top1));
  if (!dir.empty()) {
    model->save((dir / model_file(*model)).string());
    write_file_atomic((dir / kTestHitsFile).string(), hits_to_text(round.finetuned.hits));
    write_file_atomic((dir / "metrics.json").string(), round_json(round).dump(1) + "\n");
  }
  return round;
}

}  // namespace rdprune
