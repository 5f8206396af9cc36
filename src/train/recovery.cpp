#include "rdprune/recovery.h"

#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/masks.h"

namespace rdprune {

bool judged_by_labels(const std::string& judge_by) {
  return judge_by == "loss" || judge_by == "error";
}

PlanJudge recovery_judge(Network& network, const Dataset& calibration, const Dataset& judging,
                         const Recovery& recovery) {
  if (recovery.steps < 0) throw UsageError("recovery_steps", "expected a count >= 0");
  if (recovery.steps > 0 && recovery.data == nullptr) throw Error("recovery: no fine-tuning data");
  if (!judged_by_labels(recovery.judge_by) && recovery.judge_by != "distortion")
    throw UsageError("judge_by", "expected distortion, loss or error, got '" + recovery.judge_by + "'");
  torch::Tensor reference;
  if (!judged_by_labels(recovery.judge_by))
    reference = reference_outputs(network, judging, recovery.batch_size);
  return [&network, &calibration, &judging, recovery, reference](const Plan& plan, NetworkState* recovered) {
    const StateGuard saved(network);
    apply_plan(network, plan, "recovery plan");
    if (recovery.recalibrate_bn) recalibrate_batch_norm(network, calibration);
    if (recovery.steps > 0) {
      TrainOptions options = recovery.train;
      options.steps = recovery.steps;
      options.sink = nullptr;
      train(network, *recovery.data, options);
    }
    network.set_training(false);
    if (recovered != nullptr) *recovered = snapshot(network);
    torch::NoGradGuard no_grad;
    if (recovery.judge_by == "loss") return evaluate(network, judging, recovery.batch_size).loss;
    if (recovery.judge_by == "error") return 1.0 - evaluate(network, judging, recovery.batch_size).top1;
    return output_distortion(network_outputs(network, judging, recovery.batch_size), reference,
                             recovery.metric);
  };
}

}  // namespace rdprune
