
#include <torch/torch.h>

#include "rdprune/error.h"
#include "rdprune/process_group.h"
#include "rdprune/progress.h"
#include "rdprune/train.h"

namespace rdprune {
namespace {

// What one process counts on its part of the data.
struct Counts {
  int64_t correct1 = 0;
  int64_t correct5 = 0;
  int64_t nan_outputs = 0;
  double loss_sum = 0;
  std::vector<uint8_t> hits;
};

void check_logits(const torch::Tensor& logits, const Batch& batch, const Dataset& data) {
  if (logits.dim() != 2 || logits.size(0) != batch.labels.size(0)) {
    throw Error("model output has shape " + std::string(c10::str(logits.sizes())) +
                ", expected [batch, classes] logits");
  }
  if (logits.size(1) != data.num_classes()) {
    throw Error("model outputs " + std::to_string(logits.size(1)) + " classes but " + data.description() +
                " has " + std::to_string(data.num_classes()));
  }
}

// The counts on `part` of `data`, in order.
Counts count(Network& network, const Dataset& data, const Dataset& part, int64_t batch_size, Sink* sink) {
  const auto device =
      network.layers().empty() ? torch::Device(torch::kCPU) : network.layers()[0].weight.device();
  BatchLoader loader(part, batch_size, /*shuffle=*/false, /*seed=*/0);
  const int64_t k = std::min<int64_t>(5, data.num_classes());
  Counts counts;
  counts.hits.reserve(static_cast<size_t>(part.size()));
  Progress progress("eval", loader.num_batches(), sink);
  for (int64_t i = 0; i < loader.num_batches(); ++i) {
    const Batch batch = loader.get(i);
    const torch::Tensor logits = network.forward(batch.images.to(device)).to(torch::kCPU).to(torch::kFloat32);
    check_logits(logits, batch, data);
    counts.loss_sum +=
        torch::nn::functional::cross_entropy(
            logits, batch.labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .item<double>();
    counts.nan_outputs += logits.isnan().any(1).sum().item<int64_t>();
    const torch::Tensor topk = std::get<1>(logits.topk(k, /*dim=*/1));
    const torch::Tensor hits = topk.eq(batch.labels.view({-1, 1}));
    const torch::Tensor top1_hits = hits.select(1, 0).to(torch::kUInt8).contiguous();
    counts.correct1 += top1_hits.sum().item<int64_t>();
    counts.hits.insert(counts.hits.end(), top1_hits.data_ptr<uint8_t>(),
                       top1_hits.data_ptr<uint8_t>() + top1_hits.numel());
    counts.correct5 += hits.any(1).sum().item<int64_t>();
    progress.advance(1);
  }
  progress.finish();
  return counts;
}

// Every process's counts added up, and their outcomes joined in dataset order.
Counts combine(Counts counts, ProcessGroup& group) {
  const torch::Tensor totals =
      group.sum(torch::tensor({static_cast<double>(counts.correct1), static_cast<double>(counts.correct5),
                               static_cast<double>(counts.nan_outputs), counts.loss_sum},
                              torch::kFloat64));
  const auto total = totals.accessor<double, 1>();
  counts.correct1 = static_cast<int64_t>(total[0]);
  counts.correct5 = static_cast<int64_t>(total[1]);
  counts.nan_outputs = static_cast<int64_t>(total[2]);
  counts.loss_sum = total[3];
  const torch::Tensor hits = torch::cat(group.gather(
      torch::from_blob(counts.hits.data(), {static_cast<int64_t>(counts.hits.size())}, torch::kUInt8)));
  counts.hits.assign(hits.data_ptr<uint8_t>(), hits.data_ptr<uint8_t>() + hits.numel());
  return counts;
}

}  // namespace

EvalResult evaluate(Network& network, const Dataset& data, int64_t batch_size, Sink* sink,
                    ProcessGroup* group) {
  if (batch_size <= 0) throw UsageError("batch_size", "expected a positive count");
  if (data.size() == 0) throw Error(data.description() + ": no samples to evaluate");
  torch::NoGradGuard no_grad;
  network.set_training(false);
  const auto start = std::chrono::steady_clock::now();
  Counts counts;
  if (group == nullptr || group->size() == 1) {
    counts = count(network, data, data, batch_size, sink);
  } else {
    const auto [begin, end] = shard_of(data.size(), group->rank(), group->size());
    // A process with no part (fewer samples than processes) still takes part in adding up.
    counts = combine(
        end > begin ? count(network, data, data.slice(begin, end - begin), batch_size, sink) : Counts{},
        *group);
  }
  EvalResult result;
  result.samples = data.size();
  result.top1 = static_cast<double>(counts.correct1) / static_cast<double>(result.samples);
  result.top5 = static_cast<double>(counts.correct5) / static_cast<double>(result.samples);
  result.loss = counts.loss_sum / static_cast<double>(result.samples);
  result.nan_outputs = counts.nan_outputs;
  result.hits = std::move(counts.hits);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace rdprune
