#include "loom/train/grad_sync.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <cmath>

#include "loom/comm/communicator.hpp"
#include "loom/core/error.hpp"

namespace loom {

namespace {
/// Whether `g` is the slot view `view` (the same memory), not a separate tensor.
bool aliases(const at::Tensor& g, const at::Tensor& view) {
  return g.defined() && g.data_ptr() == view.data_ptr() && g.sizes() == view.sizes();
}
}  // namespace

/// Runs after autograd has accumulated a parameter's gradient into .grad.
class GradSync::Hook final : public torch::autograd::PostAccumulateGradHook {
 public:
  Hook(GradSync* sync, int64_t param) : sync_(sync), param_(param) {}
  void operator()(const torch::autograd::Variable& /*param*/) override {
    sync_->onGradient(param_);
  }

 private:
  GradSync* sync_;
  int64_t param_;
};

GradSync::GradSync(std::vector<at::Tensor> params, Communicator& comm, int64_t bucket_bytes,
                   std::vector<at::Tensor> targets, bool overlap)
    : params_(std::move(params)), targets_(std::move(targets)), comm_(comm) {
  if (targets_.empty()) targets_ = params_;
  LOOM_CHECK(!params_.empty(), "GradSync: no parameters");
  LOOM_CHECK(targets_.size() == params_.size(),
             "GradSync: " << targets_.size() << " targets for " << params_.size() << " parameters");
  const c10::Device device = targets_.front().device();
  for (size_t i = 0; i < params_.size(); ++i) {
    LOOM_CHECK(targets_[i].scalar_type() == at::kFloat && targets_[i].device() == device &&
                   targets_[i].numel() == params_[i].numel(),
               "GradSync: target " << i << " must be an fp32 tensor on " << device << " with "
                                   << params_[i].numel() << " elements");
  }
  // Reverse parameter order: backward produces the last layers' gradients first.
  const int64_t capacity = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  where_.resize(params_.size());
  for (int64_t i = static_cast<int64_t>(params_.size()) - 1; i >= 0; --i) {
    const int64_t n = params_[i].numel();
    if (buckets_.empty() ||
        (buckets_.back().elements > 0 && buckets_.back().elements + n > capacity)) {
      buckets_.emplace_back();
    }
    Bucket& b = buckets_.back();
    where_[i] = {static_cast<int64_t>(buckets_.size()) - 1, static_cast<int64_t>(b.slots.size())};
    b.slots.push_back({i, b.elements});
    b.elements += n;
    num_elements_ += n;
  }
  for (Bucket& b : buckets_) {
    b.flat = at::zeros({b.elements}, at::TensorOptions().dtype(at::kFloat).device(device));
  }
  arrived_.assign(params_.size(), false);
  overlap_ = overlap && comm_.canStartFromBackward(device);
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::autograd::impl::set_post_acc_grad_hooks(
        params_[i], std::make_unique<Hook>(this, static_cast<int64_t>(i)));
  }
  beginStep();
}

GradSync::~GradSync() {
  for (auto& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

at::Tensor GradSync::slotView(const Bucket& bucket, const Slot& slot) const {
  const at::Tensor& t = targets_[slot.param];
  return bucket.flat.narrow(0, slot.offset, t.numel()).view(t.sizes());
}

void GradSync::beginStep() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Bucket& b : buckets_) {
    b.flat.zero_();
    b.arrived = 0;
    b.started = false;
    for (const Slot& s : b.slots) {
      at::Tensor view = slotView(b, s);
      if (!targets_[s.param].is_same(params_[s.param])) params_[s.param].mutable_grad().reset();
      targets_[s.param].mutable_grad() = view;
    }
  }
  std::fill(arrived_.begin(), arrived_.end(), false);
  next_to_start_ = 0;
  started_in_backward_ = 0;
  last_micro_batch_ = false;
}

void GradSync::beginMicroBatch(bool last) {
  std::lock_guard<std::mutex> lock(mutex_);
  last_micro_batch_ = last;
}

void GradSync::collect(int64_t i) {
  const Location& at = where_[i];
  const Bucket& b = buckets_[at.bucket];
  at::Tensor& p = params_[i];
  const at::Tensor g = p.grad();
  if (!g.defined()) return;
  at::Tensor view = slotView(b, b.slots[at.slot]);
  if (targets_[i].is_same(p)) {
    // Autograd accumulated into the view in place; a gradient set from outside (or one
    // autograd replaced) holds the whole sum: copy it, and point .grad at the slot again.
    if (aliases(g, view)) return;
    view.copy_(g.view(view.sizes()));
    p.mutable_grad() = view;
  } else {
    // A 16-bit parameter: add this micro-batch's gradient into fp32, free the 16-bit one.
    view.add_(g.reshape(view.sizes()));
    p.mutable_grad().reset();
  }
}

void GradSync::onGradient(int64_t i) {
  std::lock_guard<std::mutex> lock(mutex_);
  collect(i);
  if (!overlap_ || !last_micro_batch_) return;
  LOOM_CHECK(!arrived_[i], "GradSync: parameter "
                               << i
                               << " received a second gradient in one backward pass after its "
                                  "bucket could have been started (a parameter used by two "
                                  "separate backward passes of one step)");
  arrived_[i] = true;
  ++buckets_[where_[i].bucket].arrived;
  startReadyBuckets();
}

void GradSync::startReadyBuckets() {
  while (next_to_start_ < numBuckets()) {
    Bucket& b = buckets_[next_to_start_];
    if (b.arrived != static_cast<int64_t>(b.slots.size())) break;
    start(b);
    ++next_to_start_;
    ++started_in_backward_;
  }
}

void GradSync::start(Bucket& bucket) {
  comm_.startAllReduceSum(bucket.flat);
  bucket.started = true;
}

void GradSync::reduce(double divisor) {
  LOOM_CHECK(divisor > 0, "gradient divisor must be positive, got " << divisor);
  std::lock_guard<std::mutex> lock(mutex_);
  // Gradients no hook took (no overlap, set from outside, or not produced by the last
  // backward): their buckets have not been started, so they can still be written.
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!arrived_[i]) collect(static_cast<int64_t>(i));
  }
  for (; next_to_start_ < numBuckets(); ++next_to_start_) start(buckets_[next_to_start_]);
  comm_.waitStarted();
  for (Bucket& b : buckets_) b.flat.div_(divisor);
  for (const Bucket& b : buckets_) {
    for (const Slot& s : b.slots) {
      at::Tensor view = slotView(b, s);
      if (!aliases(targets_[s.param].grad(), view)) targets_[s.param].mutable_grad() = view;
    }
  }
  last_micro_batch_ = false;
}

std::vector<at::Tensor> GradSync::flatBuckets() const {
  std::vector<at::Tensor> flats;
  for (const Bucket& b : buckets_) flats.push_back(b.flat);
  return flats;
}

at::Tensor GradSync::gradNormTensor() const {
  // One foreach reduction over the flat fp32 buckets (read once, no fp64 copy of the
  // gradients), then the per-bucket norms combined in fp64: sqrt(sum of their squares).
  const std::vector<at::Tensor> flats = flatBuckets();
  LOOM_CHECK(!flats.empty(), "GradSync: no gradient buckets");
  return at::stack(at::_foreach_norm(flats)).to(at::kDouble).pow(2).sum().sqrt();
}

double GradSync::gradNorm() const { return gradNormTensor().item<double>(); }

void GradSync::clipTo(double max_norm, double norm) {
  // As torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), clamped to 1.
  const double scale = max_norm / (norm + 1e-6);
  if (max_norm > 0 && scale < 1.0 && std::isfinite(norm)) {
    at::_foreach_mul_(flatBuckets(), scale);
  }
}

double GradSync::clip(double max_norm) {
  const double norm = gradNorm();
  clipTo(max_norm, norm);
  return norm;
}

}  // namespace loom
