#pragma once
// The Trainer behind runTraining (include/loom/train/trainer.hpp), private to src/train. One
// object per rank runs the job: set-up (trainer_setup.cpp), the loop and the step
// (trainer_step.cpp), what the run writes and reports (trainer_outputs.cpp), run()
// (trainer.cpp).

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loom/comm/communicator.hpp"
#include "loom/comm/rank_settings.hpp"
#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/job_info.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/planner.hpp"
#include "loom/model/attention.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/lora.hpp"
#include "loom/train/balancer.hpp"
#include "loom/train/batch_tensors.hpp"
#include "loom/train/device_timer.hpp"
#include "loom/train/eval_samples.hpp"
#include "loom/train/grad_sync.hpp"
#include "loom/train/loss_scaler.hpp"
#include "loom/train/metrics.hpp"
#include "loom/train/optimizer.hpp"
#include "loom/train/step_profiler.hpp"

namespace loom::detail {

namespace fs = std::filesystem;

/// The stop signal (SIGTERM, SIGUSR1, SIGINT) this process received, 0 if none; set by the
/// handler run() installs (trainer.cpp).
extern std::atomic<int> g_stop_signal;

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t);

class Trainer {
 public:
  Trainer(World& world, const Config& config) : world_(world), config_(config) {}

  int run();

 private:
  // ---- set-up (trainer_setup.cpp) -------------------------------------------------------

  /// Collective: whether any rank received a stop signal; if so, logged as stopping during
  /// set-up (nothing was trained, so nothing is checkpointed).
  bool stopRequested(const char* stage);

  /// Test hook LOOM_TEST_SIGNAL_AT=setup: rank 0 sends itself SIGUSR1 as set-up begins.
  void signalForTest(const char* when) const;

  void setupRanks();

  /// Collective, once everything is validated (model, data, agreement, resume point): nothing
  /// in run.output_dir changes before, so a refused run leaves an existing run as it was.
  /// Rank 0 writes the resolved config.yaml; every rank checks that it sees it.
  void writeRunRecord();

  /// Every rank's memory estimate, logged by rank 0 before anything is loaded; a rank whose
  /// estimate exceeds its device's free memory warns (and says what to change).
  void estimateMemory();

  void setupModel();

  void setupData();

  /// Runs `make`; its input errors also name config key `key` and its place.
  template <typename Make>
  auto blameOn(const std::string& key, Make&& make) const -> decltype(make()) {
    try {
      return make();
    } catch (const InputError& e) {
      throw InputError(key + " (" + config_.where(key) + "): " + e.what());
    }
  }

  std::unique_ptr<Hdf5Dataset> openDataset(const std::string& key, const std::string& path,
                                           int64_t vocab);

  void setupOptimizer();

  /// The checkpoint checkpoint.resume asks for, as this rank sees it (the ranks then check
  /// that they all see the same one: checkAgreement).
  std::optional<fs::path> checkpointToResume() const;

  /// Collective: every rank read the same config, data, model and resume point, and the
  /// data was made with the model's tokenizer (agreement.hpp).
  void checkAgreement(const std::optional<fs::path>& resume) const;

  void resumeFrom(const fs::path& checkpoint);

  /// balance: auto. Every rank times a forward/backward of the same shape (micro_batch
  /// rows of up to 512 tokens, two documents per row, random ids), after one untimed
  /// warm-up, and the weights start proportional to the measured tokens/s. Gradients go
  /// through autograd::grad and are dropped (beginStep clears anything accumulated).
  void probeBalance();

  // ---- the loop and the step (trainer_step.cpp) -----------------------------------------

  int loop();

  struct StepResult {
    bool finite = true;
    bool overflow = false;  // fp16: non-finite gradients the loss scale can still absorb
    double loss = 0;
    double grad_norm = 0;
    double lr = 0;
    int64_t tokens = 0;
    double step_seconds = 0;
    std::vector<double> rank_seconds, rank_data_seconds, rank_tokens, rank_memory,
        rank_sync_seconds, rank_tensor_peak, rank_busy_seconds;
    bool reweighted = false;
    int stop_signal = 0;  // a stop signal some rank received (0: none)
  };

  StepResult trainStep();

  /// This step's micro-batches, staged for the device: those prefetched during the previous
  /// step when they are for the same samples (the balancer may have re-weighted since),
  /// else read and staged now.
  std::vector<StagedBatch> stagedFor(const RankStepPlan& plan);

  /// Assembles a rank's step into batch layouts and stages them in (pinned) host memory.
  std::vector<StagedBatch> stageStep(const RankStepPlan& plan, const SampleBatch& data) const;

  /// Starts reading the next step's share on the prefetch thread, planned with the current
  /// weights, and assembling and staging it on another, so both overlap this step's compute.
  void prefetchNextStep();

  /// Test hook: LOOM_TEST_GRADS_DIR=DIR makes rank 0 write each step's reduced gradients
  /// (before clipping) to DIR/grads-<step>.safetensors, so tests can compare gradients
  /// across splits directly (Adam's normalisation would magnify rounding noise).
  void dumpGradientsForTest();

  // ---- what the run writes and reports (trainer_outputs.cpp) ----------------------------

  void report(const StepResult& r, Clock::time_point start, int64_t first_step);

  void evaluate();

  /// train.eval_prompts answered on rank 0: in the log, metrics.jsonl and TensorBoard.
  void answerEvalPrompts();

  void evaluateLoss();

  void checkpoint();

  void saveFinal();

  World& world_;
  const Config& config_;
  RankSettings settings_;
  std::vector<RankSettings> all_settings_;
  Backend backend_ = Backend::kMpi;
  c10::Device device_ = c10::Device(c10::kCPU);
  at::ScalarType dtype_ = at::kFloat;
  std::unique_ptr<Communicator> comm_;
  fs::path run_dir_;
  JobInfo job_;  // the scheduler's job (Slurm), for the log, metrics and config.yaml

  std::shared_ptr<CausalLm> model_;
  bool lora_ = true;
  LoraSpec spec_;
  std::vector<std::string> names_;
  // Trainable tensors as autograd sees them, in the model's dtype (for LoRA in a 16-bit
  // dtype: the 16-bit copies of the adapter factors), and their fp32 masters (the same
  // tensor when fp32; for LoRA copies, the model's fp32 factors).
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> masters_;

  std::unique_ptr<Hdf5Dataset> train_data_, eval_data_;
  std::unique_ptr<BatchPlanner> planner_, eval_planner_;
  std::unique_ptr<EvalSamples> eval_samples_;  // train.eval_prompts
  struct Prefetched {
    PlanCursor cursor;
    std::vector<int64_t> sample_ids;
    std::future<std::vector<StagedBatch>> staged;
  };
  // Declared after the datasets: destroyed first, so the thread stops before they close.
  std::unique_ptr<Prefetcher> prefetcher_;
  std::optional<Prefetched> prefetched_;
  int32_t pad_id_ = 0;
  int64_t total_steps_ = 0;

  std::unique_ptr<Optimizer> optimizer_;
  AttentionBackend packed_attention_ = AttentionBackend::kAuto;
  int cuda_major_ = 0;  // compute capability of this rank's GPU
  std::unique_ptr<GradSync> grad_sync_;
  std::unique_ptr<DeviceTimer> compute_timer_;
  double tail_seconds_ = 0;  // the last step's clipping and optimizer step on this rank
  std::unique_ptr<Balancer> balancer_;
  std::unique_ptr<MetricsLog> metrics_;
  PlanCursor cursor_;
  int64_t step_ = 0;
  int64_t tokens_seen_ = 0;
  LossScaler scaler_ = LossScaler::disabled();
  bool weights_restored_ = false;  // a resumed run keeps its balancer weights
  int64_t resumed_step_ = -1;      // steps done by the checkpoint resumed from
  nlohmann::json memory_estimate_ = nlohmann::json::array();
  int64_t loaded_bytes_ = 0;
};

}  // namespace loom::detail
