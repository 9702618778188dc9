#include "loom/train/grad_sync.hpp"

#include <cmath>

#include "loom/comm/communicator.hpp"
#include "loom/core/error.hpp"

namespace loom {

GradSync::GradSync(std::vector<at::Tensor> params, Communicator& comm, int64_t bucket_bytes,
                   std::vector<at::Tensor> targets)
    : params_(std::move(params)), targets_(std::move(targets)), comm_(comm) {
  if (targets_.empty()) targets_ = params_;
  LOOM_CHECK(targets_.size() == params_.size(),
             "GradSync: " << targets_.size() << " targets for " << params_.size() << " parameters");
  const int64_t capacity = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  for (int64_t i = 0; i < static_cast<int64_t>(params_.size()); ++i) {
    const int64_t n = params_[i].numel();
    if (buckets_.empty() ||
        (buckets_.back().elements > 0 && buckets_.back().elements + n > capacity)) {
      buckets_.emplace_back();
    }
    buckets_.back().slots.push_back({i, buckets_.back().elements});
    buckets_.back().elements += n;
    num_elements_ += n;
  }
}

void GradSync::reduce(double divisor) {
  LOOM_CHECK(divisor > 0, "gradient divisor must be positive, got " << divisor);
  for (const Bucket& bucket : buckets_) {
    if (bucket.slots.empty()) continue;
    const at::Tensor& first = params_[bucket.slots.front().param];
    // [bucket.elements] fp32, on the parameters' device.
    at::Tensor flat = at::zeros({bucket.elements}, first.options().dtype(at::kFloat));
    for (const Slot& s : bucket.slots) {
      const at::Tensor& p = params_[s.param];
      if (p.grad().defined()) {
        flat.narrow(0, s.offset, p.numel()).copy_(p.grad().reshape({-1}));
      }
    }
    comm_.allReduceSum(flat);
    flat.div_(divisor);
    for (const Slot& s : bucket.slots) {
      at::Tensor& t = targets_[s.param];
      at::Tensor g = flat.narrow(0, s.offset, t.numel()).view(t.sizes());
      if (t.grad().defined()) {
        t.mutable_grad().copy_(g);
      } else {
        t.mutable_grad() = g.to(t.scalar_type()).clone();
      }
    }
  }
}

double GradSync::gradNorm() const {
  double sum = 0.0;
  for (const auto& p : targets_) {
    if (!p.grad().defined()) continue;
    sum += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(sum);
}

double GradSync::clip(double max_norm) {
  const double norm = gradNorm();
  // As torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), clamped to 1.
  const double scale = max_norm / (norm + 1e-6);
  if (max_norm > 0 && scale < 1.0 && std::isfinite(norm)) {
    for (auto& p : targets_) {
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
    }
  }
  return norm;
}

}  // namespace loom
