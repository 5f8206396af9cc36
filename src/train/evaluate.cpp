
#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/progress.h"
#include "rdprune/train.h"

namespace rdprune {

EvalResult evaluate(Network& network, const Dataset& data, int64_t batch_size, Sink* sink) {
  if (batch_size <= 0) throw UsageError("batch_size", "expected a positive count");
  if (data.size() == 0) throw Error(data.description() + ": no samples to evaluate");
  torch::NoGradGuard no_grad;
  network.set_training(false);
  const auto device =
      network.layers().empty() ? torch::Device(torch::kCPU) : network.layers()[0].weight.device();
  BatchLoader loader(data, batch_size, /*shuffle=*/false, /*seed=*/0);
  const int64_t k = std::min<int64_t>(5, data.num_classes());
  int64_t correct1 = 0;
  int64_t correct5 = 0;
  double loss_sum = 0;
  EvalResult result;
  result.hits.reserve(static_cast<size_t>(data.size()));
  Progress progress("eval", loader.num_batches(), sink);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < loader.num_batches(); ++i) {
    const Batch batch = loader.get(i);
    const torch::Tensor logits = network.forward(batch.images.to(device)).to(torch::kCPU).to(torch::kFloat32);
    if (logits.dim() != 2 || logits.size(0) != batch.labels.size(0)) {
      throw Error("model output has shape " + std::string(c10::str(logits.sizes())) +
                  ", expected [batch, classes] logits");
    }
    if (logits.size(1) != data.num_classes()) {
      throw Error("model outputs " + std::to_string(logits.size(1)) + " classes but " + data.description() +
                  " has " + std::to_string(data.num_classes()));
    }
    loss_sum +=
        torch::nn::functional::cross_entropy(
            logits, batch.labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .item<double>();
    result.nan_outputs += logits.isnan().any(1).sum().item<int64_t>();
    const torch::Tensor topk = std::get<1>(logits.topk(k, /*dim=*/1));
    const torch::Tensor hits = topk.eq(batch.labels.view({-1, 1}));
    const torch::Tensor top1_hits = hits.select(1, 0).to(torch::kUInt8).contiguous();
    correct1 += top1_hits.sum().item<int64_t>();
    result.hits.insert(result.hits.end(), top1_hits.data_ptr<uint8_t>(),
                       top1_hits.data_ptr<uint8_t>() + top1_hits.numel());
    correct5 += hits.any(1).sum().item<int64_t>();
    progress.advance(1);
  }
  progress.finish();
  result.samples = data.size();
  result.top1 = static_cast<double>(correct1) / static_cast<double>(result.samples);
  result.top5 = static_cast<double>(correct5) / static_cast<double>(result.samples);
  result.loss = loss_sum / static_cast<double>(result.samples);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace rdprune
