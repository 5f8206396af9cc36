#include "script_batch_norm.h"

#include <unordered_set>

#include "rdprune/error.h"

namespace rdprune {

ScriptBatchNorms::ScriptBatchNorms(const torch::jit::Module& module, const std::string& source)
    : source_(source) {
  std::unordered_set<const void*> seen;  // a batch norm under two names is one
  for (const auto& item : module.named_modules()) {
    const torch::jit::Module& child = item.value;
    if (!child.hasattr("running_mean") || !child.hasattr("running_var")) continue;
    if (!child.attr("running_mean").isTensor() || !child.attr("running_var").isTensor()) continue;
    if (!seen.insert(child.attr("running_mean").toTensor().unsafeGetTensorImpl()).second) continue;
    const auto momentum = child.type()->findConstant("momentum");
    if (!momentum && !child.hasattr("momentum")) continue;  // frozen: training never updates it
    Norm norm{item.name, child, 0.0, {}, {}, {}, 0};
    if (momentum && momentum->isDouble() && momentum->toDouble() > 0) {
      norm.momentum = momentum->toDouble();
    } else if (!momentum || !momentum->isNone()) {
      throw Error(source + ": batch norm " + item.name +
                  " has no constant momentum (a number or None), so its statistics cannot be recalibrated");
    }
    norms_.push_back(std::move(norm));
  }
}

torch::Tensor ScriptBatchNorms::statistic(const Norm& norm, const char* name) const {
  return norm.module.attr(name).toTensor();
}

torch::Tensor ScriptBatchNorms::batches_tracked(const Norm& norm) const {
  if (!norm.module.hasattr("num_batches_tracked")) return {};
  const c10::IValue count = norm.module.attr("num_batches_tracked");
  return count.isTensor() ? count.toTensor() : torch::Tensor();
}

int64_t ScriptBatchNorms::calls(const Norm& norm) const {
  const torch::Tensor count = batches_tracked(norm);
  return count.defined() ? count.item<int64_t>() - norm.tracked : 1;
}

void ScriptBatchNorms::zero(Norm& norm) {
  torch::NoGradGuard no_grad;
  statistic(norm, "running_mean").zero_();
  statistic(norm, "running_var").fill_(norm.momentum > 0 ? 0.0 : 1.0);
  if (const torch::Tensor count = batches_tracked(norm); count.defined()) count.zero_();
  norm.tracked = 0;
}

void ScriptBatchNorms::begin() {
  for (Norm& norm : norms_) {
    norm.before = {statistic(norm, "running_mean").clone(), statistic(norm, "running_var").clone()};
    norm.mean_sum = torch::zeros_like(norm.before[0], torch::kFloat64);
    norm.var_sum = torch::zeros_like(norm.before[1], torch::kFloat64);
    norm.runs = 0;
    zero(norm);
  }
}

void ScriptBatchNorms::step() {
  for (Norm& norm : norms_) {
    const int64_t count = calls(norm);
    if (count > 1) {
      throw Error(source_ + ": batch norm " + norm.name + " runs " + std::to_string(count) +
                  " times in one forward pass, so its statistics cannot be recalibrated");
    }
    if (count == 0) continue;
    ++norm.runs;
    if (norm.momentum == 0) {
      norm.tracked += count;
      continue;
    }
    norm.mean_sum += statistic(norm, "running_mean").to(torch::kFloat64) / norm.momentum;
    norm.var_sum += statistic(norm, "running_var").to(torch::kFloat64) / norm.momentum;
    zero(norm);
  }
}

void ScriptBatchNorms::end() {
  torch::NoGradGuard no_grad;
  for (Norm& norm : norms_) {
    torch::Tensor mean = statistic(norm, "running_mean");
    torch::Tensor var = statistic(norm, "running_var");
    if (norm.runs == 0) {
      mean.copy_(norm.before[0]);
      var.copy_(norm.before[1]);
    } else if (norm.momentum > 0) {
      mean.copy_(norm.mean_sum / static_cast<double>(norm.runs));
      var.copy_(norm.var_sum / static_cast<double>(norm.runs));
    }
    if (const torch::Tensor count = batches_tracked(norm); norm.momentum > 0 && count.defined())
      count.fill_(norm.runs);
  }
}

}  // namespace rdprune
