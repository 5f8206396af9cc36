#include "script_batch_norm.h"

#include "rdprune/error.h"

namespace rdprune {

ScriptBatchNorms::ScriptBatchNorms(const torch::jit::Module& module, const std::string& source) {
  for (const auto& item : module.named_modules()) {
    const torch::jit::Module& child = item.value;
    if (!child.hasattr("running_mean") || !child.hasattr("running_var")) continue;
    if (!child.attr("running_mean").isTensor() || !child.attr("running_var").isTensor()) continue;
    const auto momentum = child.type()->findConstant("momentum");
    Norm norm{child, 0.0, {}, {}};
    if (momentum && momentum->isDouble() && momentum->toDouble() > 0) {
      norm.momentum = momentum->toDouble();
    } else if (!momentum || !momentum->isNone()) {
      throw Error(source + ": batch norm " + item.name +
                  " has no constant momentum (a number or None), so its statistics cannot be recalibrated");
    }
    norms_.push_back(std::move(norm));
  }
}

void ScriptBatchNorms::zero(Norm& norm) {
  torch::NoGradGuard no_grad;
  norm.module.attr("running_mean").toTensor().zero_();
  norm.module.attr("running_var").toTensor().fill_(norm.momentum > 0 ? 0.0 : 1.0);
  if (norm.module.hasattr("num_batches_tracked") && norm.module.attr("num_batches_tracked").isTensor())
    norm.module.attr("num_batches_tracked").toTensor().zero_();
}

void ScriptBatchNorms::begin() {
  batches_ = 0;
  for (Norm& norm : norms_) {
    zero(norm);
    norm.mean_sum = torch::zeros_like(norm.module.attr("running_mean").toTensor(), torch::kFloat64);
    norm.var_sum = torch::zeros_like(norm.module.attr("running_var").toTensor(), torch::kFloat64);
  }
}

void ScriptBatchNorms::step() {
  ++batches_;
  for (Norm& norm : norms_) {
    if (norm.momentum == 0) continue;
    norm.mean_sum += norm.module.attr("running_mean").toTensor().to(torch::kFloat64) / norm.momentum;
    norm.var_sum += norm.module.attr("running_var").toTensor().to(torch::kFloat64) / norm.momentum;
    zero(norm);
  }
}

void ScriptBatchNorms::end() {
  if (batches_ == 0) return;
  torch::NoGradGuard no_grad;
  for (Norm& norm : norms_) {
    if (norm.momentum == 0) continue;
    torch::Tensor mean = norm.module.attr("running_mean").toTensor();
    torch::Tensor var = norm.module.attr("running_var").toTensor();
    mean.copy_(norm.mean_sum / static_cast<double>(batches_));
    var.copy_(norm.var_sum / static_cast<double>(batches_));
  }
}

}  // namespace rdprune
