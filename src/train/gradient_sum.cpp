#include "gradient_sum.h"

#include <torch/torch.h>

#include "rdprune/error.h"

namespace rdprune {

GradientSum::GradientSum(const std::vector<torch::Tensor>& parameters, ProcessGroup& group,
                         int64_t bucket_bytes)
    : group_(group) {
  for (const torch::Tensor& p : parameters)
    if (p.requires_grad()) parameters_.push_back(p);
  const size_t n = parameters_.size();
  bucket_of_.assign(n, 0);
  offset_of_.assign(n, 0);
  received_.assign(n, false);
  // From the last parameter backwards; a bucket holds one dtype on one device.
  int64_t bytes = 0;
  for (size_t k = n; k-- > 0;) {
    const torch::Tensor& p = parameters_[k];
    const bool fits = !buckets_.empty() && bytes < bucket_bytes &&
                      parameters_[buckets_.back().members.front()].options().type_equal(p.options());
    if (!fits) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& bucket = buckets_.back();
    bucket_of_[k] = buckets_.size() - 1;
    offset_of_[k] = bytes / static_cast<int64_t>(p.element_size());
    bucket.members.push_back(k);
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  for (Bucket& bucket : buckets_) {
    int64_t elements = 0;
    for (size_t k : bucket.members) elements += parameters_[k].numel();
    bucket.flat =
        torch::zeros({elements}, parameters_[bucket.members.front()].options().requires_grad(false));
  }
  for (size_t k = 0; k < n; ++k)
    hooks_.push_back(parameters_[k].register_hook([this, k](const torch::Tensor& g) { receive(k, g); }));
}

GradientSum::~GradientSum() {
  for (size_t k = 0; k < hooks_.size(); ++k) parameters_[k].remove_hook(hooks_[k]);
}

torch::Tensor GradientSum::slot(size_t parameter) {
  const torch::Tensor& p = parameters_[parameter];
  return buckets_[bucket_of_[parameter]].flat.narrow(0, offset_of_[parameter], p.numel()).view(p.sizes());
}

void GradientSum::receive(size_t parameter, const torch::Tensor& gradient) {
  Bucket& bucket = buckets_[bucket_of_[parameter]];
  if (bucket.wait) throw Error("data-parallel training: a gradient arrived after its bucket was sent");
  torch::NoGradGuard no_grad;
  if (received_[parameter]) {
    slot(parameter).add_(gradient);  // a second use of the parameter in one backward pass
    return;
  }
  slot(parameter).copy_(gradient);
  received_[parameter] = true;
  ++bucket.ready;
  start_ready_buckets();
}

void GradientSum::start_ready_buckets() {
  while (next_bucket_ < buckets_.size() &&
         buckets_[next_bucket_].ready == buckets_[next_bucket_].members.size()) {
    Bucket& bucket = buckets_[next_bucket_++];
    bucket.wait = group_.start_sum(bucket.flat);
  }
}

void GradientSum::finish() {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < parameters_.size(); ++k) {
    if (received_[k]) continue;
    slot(k).zero_();
    received_[k] = true;
    ++buckets_[bucket_of_[k]].ready;
  }
  start_ready_buckets();
  for (Bucket& bucket : buckets_) {
    bucket.wait();
    bucket.wait = nullptr;
    bucket.ready = 0;
  }
  next_bucket_ = 0;
  for (size_t k = 0; k < parameters_.size(); ++k) {
    received_[k] = false;
    torch::Tensor& grad = parameters_[k].mutable_grad();
    if (grad.defined()) {
      grad.copy_(slot(k));
    } else {
      grad = slot(k).clone();
    }
  }
}

}  // namespace rdprune
