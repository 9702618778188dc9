// The Trainer's loop and its step (trainer_impl.hpp): forward/backward over this rank's
// micro-batches, the gradient sync, the step's one all-gather, the optimizer step, prefetching.
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <limits>
#include <nlohmann/json.hpp>

#include "loom/comm/communicator.hpp"
#include "loom/comm/device.hpp"
#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/log.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/planner.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/loss.hpp"
#include "loom/model/safetensors.hpp"
#include "loom/train/balancer.hpp"
#include "loom/train/batch_tensors.hpp"
#include "loom/train/cpu_memory.hpp"
#include "loom/train/device_timer.hpp"
#include "loom/train/grad_sync.hpp"
#include "loom/train/loss_scaler.hpp"
#include "loom/train/metrics.hpp"
#include "loom/train/optimizer.hpp"
#include "loom/train/run_record.hpp"
#include "loom/train/schedule.hpp"
#include "trainer_impl.hpp"

namespace loom::detail {

namespace {

/// Test hooks, "rank:step" each: LOOM_TEST_FAIL_AT makes that rank throw at the start of
/// that step; LOOM_TEST_KILL_AT makes it die by SIGKILL there (no chance to clean up).
void maybeFailForTest(int rank, int64_t step) {
  auto matches = [&](const char* name) {
    const char* spec = std::getenv(name);
    int r = -1;
    long long s = -1;
    return spec && std::sscanf(spec, "%d:%lld", &r, &s) == 2 && r == rank && s == step;
  };
  if (matches("LOOM_TEST_KILL_AT")) std::raise(SIGKILL);
  if (matches("LOOM_TEST_FAIL_AT")) {
    throw std::runtime_error("test hook LOOM_TEST_FAIL_AT: rank " + std::to_string(rank) +
                             " fails at step " + std::to_string(step));
  }
}

/// Test hook LOOM_TEST_NAN_AT="rank:first[-last]": that rank's loss is NaN in those steps.
bool nanForTest(int rank, int64_t step) {
  const char* spec = std::getenv("LOOM_TEST_NAN_AT");
  int r = -1;
  long long first = -1, last = -1;
  if (!spec) return false;
  const int n = std::sscanf(spec, "%d:%lld-%lld", &r, &first, &last);
  if (n < 2) return false;
  if (n == 2) last = first;
  return r == rank && step >= first && step <= last;
}

/// The most bytes tensors have held: CUDA's caching allocator's peak, or on the CPU the
/// counting allocator's (cpu_memory.hpp).
double peakTensorBytes(const c10::Device& device) {
  if (device.is_cuda()) return static_cast<double>(cudaPeakMemoryBytes(device.index()));
  return static_cast<double>(cpuPeakTensorBytes());
}

/// CUDA: the caching allocator's peak (tensors only). CPU: the process's peak resident size.
double peakMemoryBytes(const c10::Device& device) {
  if (device.is_cuda()) return static_cast<double>(cudaPeakMemoryBytes(device.index()));
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // Linux: kilobytes
}

}  // namespace

int Trainer::loop() {
  const auto start = Clock::now();
  const int64_t first_step = step_;
  int bad_steps = 0;
  int64_t last_checkpoint = -1;
  if (world_.isRoot()) {
    metrics_ = std::make_unique<MetricsLog>(run_dir_, resumed_step_);
    // A run record per start (a requeued job appends to the same file): which job, and
    // which restart of it, the steps below come from.
    std::vector<std::string> hosts;
    for (const auto& r : all_settings_) hosts.push_back(r.host);
    metrics_->write(runRecord(job_, step_, hosts).dump());
    if (resumed_step_ >= 0) {
      metrics_->write(nlohmann::json({{"resumed_after_step", resumed_step_}}).dump());
    }
    metrics_->write(nlohmann::json({{"memory_estimate", memory_estimate_}}).dump());
  }
  // Every rank's tensor bytes once the model is loaded (before the optimizer's state).
  at::Tensor loaded =
      comm_
          ->allGather(torch::tensor({static_cast<double>(loaded_bytes_)},
                                    torch::TensorOptions().dtype(torch::kDouble).device(device_)))
          .to(at::kCPU);
  if (world_.isRoot()) {
    nlohmann::json per_rank = nlohmann::json::array();
    for (int k = 0; k < world_.size(); ++k) per_rank.push_back(loaded[k][0].item<double>());
    metrics_->write(nlohmann::json({{"loaded_tensor_bytes", per_rank}}).dump());
  }
  // A signal that arrived since the last set-up check: stop before the first step.
  if (world_.anyTrue(g_stop_signal.load() != 0)) {
    LOOM_WARN("signal " << g_stop_signal.load() << " received: checkpointing at step " << step_
                        << " and stopping");
    checkpoint();
    return kExitOk;
  }
  const TrainConfig& t = config_.train;
  StepProfiler profiler(run_dir_ / "profile", world_.rank(), device_, t.profile_start,
                        t.profile_steps);
  if (t.profile_steps > 0 && world_.isRoot() &&
      (t.profile_start <= first_step || t.profile_start + t.profile_steps - 1 > total_steps_)) {
    LOOM_WARN("train.profile_start " << t.profile_start << " and profile_steps " << t.profile_steps
                                     << " are not within steps " << first_step + 1 << "-"
                                     << total_steps_ << " of this run: nothing is profiled");
  }
  while (step_ < total_steps_) {
    maybeFailForTest(world_.rank(), step_);
    profiler.beforeStep(step_ + 1);
    StepResult r = trainStep();
    if (r.overflow) {
      LOOM_WARN("step " << step_ << ": fp16 gradients overflowed; step skipped on every rank, "
                        << "loss scale now " << scaler_.scale());
    } else if (!r.finite) {
      ++bad_steps;
      LOOM_WARN("step " << step_ << ": non-finite loss or gradients; step skipped on every rank ("
                        << bad_steps << " in a row)");
      LOOM_CHECK(
          bad_steps < 3,
          "3 steps in a row had a non-finite loss; stopping (lower train.lr, check the data)");
    } else {
      bad_steps = 0;
    }
    ++step_;
    // The window's name, for the two messages below (made only when one is written).
    const auto window = [&] {
      return t.profile_steps > 1
                 ? "steps " + std::to_string(t.profile_start) + "-" + std::to_string(step_)
                 : "step " + std::to_string(step_);
    };
    fs::path table;
    try {
      table = profiler.afterStep(step_);
    } catch (const std::exception& e) {  // a profile that cannot be written costs no training
      LOOM_WARN("the profile of " << window() << " was not written: " << e.what());
    }
    if (!table.empty() && world_.isRoot()) {
      LOOM_INFO("profiled " << window() << ": a table of where the time went per rank in "
                            << table.parent_path().string()
                            << " (the profiler's overhead is in these steps' times)");
    }
    cursor_ = planner_->next(cursor_);
    report(r, start, first_step);
    if (config_.train.eval_every > 0 && step_ % config_.train.eval_every == 0 &&
        step_ < total_steps_) {
      evaluate();
    }
    if (config_.checkpoint.every > 0 && step_ % config_.checkpoint.every == 0) {
      checkpoint();
      last_checkpoint = step_;
    }
    // Every rank learned of a stop signal on any rank in the step's one all-gather.
    if (r.stop_signal != 0 && step_ < total_steps_) {
      LOOM_WARN("signal " << r.stop_signal << " received: checkpointing at step " << step_
                          << " and stopping");
      if (last_checkpoint != step_) checkpoint();
      return kExitOk;
    }
  }
  if (last_checkpoint != step_) checkpoint();
  evaluate();
  saveFinal();
  if (world_.isRoot() && metrics_) {
    metrics_->writeLossCurve(run_dir_ / "loss.svg", config_.run.name + ": loss per step");
  }
  return kExitOk;
}

Trainer::StepResult Trainer::trainStep() {
  StepResult r;
  const auto t0 = Clock::now();
  // Dropout draws from a generator seeded per (seed, step, rank): a resumed run draws the
  // same masks as an uninterrupted one, with nothing extra to checkpoint.
  torch::manual_seed(static_cast<uint64_t>(config_.run.seed) * 1000003ULL +
                     static_cast<uint64_t>(step_) * 7919ULL + static_cast<uint64_t>(world_.rank()));
  const GlobalBatch batch = planner_->globalBatch(cursor_);
  const RankStepPlan plan =
      planner_->planRank(batch, balancer_->weights(), world_.rank(), settings_.micro_batch);
  const std::vector<StagedBatch> staged = stagedFor(plan);
  const double data_seconds = secondsSince(t0);
  prefetchNextStep();

  grad_sync_->beginStep();
  // The loss sum stays on the device: no host synchronisation inside the step.
  at::Tensor local_loss = at::zeros({}, at::TensorOptions(at::kDouble).device(device_));
  model_->train();
  const bool inject_nan = nanForTest(world_.rank(), step_);
  const double scale = scaler_.scale();
  // Back-propagated: loss_sum * scale / (the step's global loss tokens), the same factor on
  // every rank, so gradients have a mean loss's size (what fp16's scale is made for) and
  // the reduced sum needs only the loss scale divided out.
  const double factor = scale / static_cast<double>(std::max<int64_t>(1, batch.loss_tokens));
  compute_timer_->start();
  for (size_t k = 0; k < staged.size(); ++k) {
    const BatchTensors t = toDevice(staged[k], device_);
    at::Tensor hidden = model_->hidden(t.input);  // [rows, width, H]
    LossSum loss = causalLmLoss(hidden, model_->lmHeadWeight(), t.targets,
                                settings_.loss_chunk_tokens, factor);
    LOOM_CHECK(loss.count == plan.micro_batches[k].loss_tokens,
               "the batch layout has " << loss.count << " targets, the plan "
                                       << plan.micro_batches[k].loss_tokens);
    if (inject_nan) loss.sum = loss.sum * std::numeric_limits<double>::quiet_NaN();
    // During the last backward, gradient buckets are all-reduced as they fill.
    grad_sync_->beginMicroBatch(k + 1 == staged.size());
    (loss.sum * factor).backward();
    local_loss.add_(loss.sum.detach());
  }
  compute_timer_->stop();
  // Starts the buckets backward did not, waits for every sum; divides the loss scale out.
  const auto t2 = Clock::now();
  grad_sync_->reduce(scale);
  const double sync_seconds = secondsSince(t2);
  const at::Tensor grad_norm = grad_sync_->gradNormTensor();  // [] fp64, on the device
  // This rank's own compute time (the balancer's measure), not waiting for its peers; the
  // step's one wait for the device.
  const double compute_seconds = compute_timer_->seconds();

  // The rank's own work of a step, which the balancer equalises: its compute, its wait for
  // data, and the previous step's clipping and optimizer step (each rank does those itself,
  // at its own speed); never the time spent waiting for peers.
  const double busy_seconds = compute_seconds + data_seconds + tail_seconds_;

  // The step's one transfer: [rank, (loss, grad norm, compute s, data s, tokens, peak
  // memory, grad sync s, tensor peak, busy s, stop signal)].
  at::Tensor host_values =
      torch::tensor({compute_seconds, data_seconds, static_cast<double>(plan.local_tokens),
                     peakMemoryBytes(device_), sync_seconds, peakTensorBytes(device_), busy_seconds,
                     static_cast<double>(g_stop_signal.load())},
                    torch::TensorOptions().dtype(torch::kDouble));
  at::Tensor mine = at::cat({local_loss.view({1}), grad_norm.view({1}), host_values.to(device_)});
  at::Tensor all = comm_->allGather(mine).to(torch::kCPU).contiguous();
  const auto values = all.accessor<double, 2>();
  double global_loss = 0;
  for (int k = 0; k < world_.size(); ++k) {
    global_loss += values[k][0];
    r.rank_seconds.push_back(values[k][2]);
    r.rank_data_seconds.push_back(values[k][3]);
    r.rank_tokens.push_back(values[k][4]);
    r.rank_memory.push_back(values[k][5]);
    r.rank_sync_seconds.push_back(values[k][6]);
    r.rank_tensor_peak.push_back(values[k][7]);
    r.rank_busy_seconds.push_back(values[k][8]);
    r.stop_signal = std::max(r.stop_signal, static_cast<int>(values[k][9]));
  }
  const auto tail_start = Clock::now();
  r.grad_norm = values[0][1];
  r.loss = global_loss / static_cast<double>(std::max<int64_t>(1, batch.loss_tokens));
  r.tokens = batch.tokens;
  r.lr = learningRate(config_.train.lr_schedule, config_.train.lr, config_.train.warmup_steps,
                      total_steps_, step_);

  dumpGradientsForTest();
  grad_sync_->clipTo(config_.train.max_grad_norm, r.grad_norm);
  r.finite = std::isfinite(global_loss) && std::isfinite(r.grad_norm);
  r.overflow = !r.finite && scaler_.enabled() && !scaler_.atFloor();
  if (scaler_.update(r.finite)) optimizer_->step(r.lr);
  tail_seconds_ = secondsSince(tail_start);
  r.reweighted = balancer_->observe(step_, r.rank_busy_seconds, r.rank_tokens);
  r.step_seconds = secondsSince(t0);
  return r;
}

std::vector<StagedBatch> Trainer::stagedFor(const RankStepPlan& plan) {
  if (prefetched_) {
    Prefetched p = std::move(*prefetched_);
    prefetched_.reset();
    if (p.cursor == cursor_ && p.sample_ids == plan.sample_ids) return p.staged.get();
    p.staged.wait();  // stale: planned with other weights
  }
  return stageStep(plan, train_data_->readSamples(plan.sample_ids));
}

std::vector<StagedBatch> Trainer::stageStep(const RankStepPlan& plan,
                                            const SampleBatch& data) const {
  std::vector<StagedBatch> out;
  for (const MicroBatch& mb : planner_->assemble(plan, data, pad_id_)) {
    out.push_back(stage(mb, device_));
  }
  return out;
}

void Trainer::prefetchNextStep() {
  if (step_ + 1 >= total_steps_) return;
  const PlanCursor next = planner_->next(cursor_);
  RankStepPlan plan = planner_->planRank(planner_->globalBatch(next), balancer_->weights(),
                                         world_.rank(), settings_.micro_batch);
  std::vector<int64_t> ids = plan.sample_ids;
  auto read = prefetcher_->request(ids);
  auto staged = std::async(std::launch::async,
                           [this, plan = std::move(plan), read = std::move(read)]() mutable {
                             return stageStep(plan, read.get());
                           });
  prefetched_ = Prefetched{next, std::move(ids), std::move(staged)};
}

void Trainer::dumpGradientsForTest() {
  const char* dir = std::getenv("LOOM_TEST_GRADS_DIR");
  if (!dir || !world_.isRoot()) return;
  NamedTensors named;
  for (size_t i = 0; i < names_.size(); ++i) {
    named.emplace_back(names_[i], masters_[i].grad().detach().to(at::kCPU).clone());
  }
  fs::create_directories(dir);
  saveSafetensors(fs::path(dir) / ("grads-" + std::to_string(step_) + ".safetensors"), named, {});
}

}  // namespace loom::detail
