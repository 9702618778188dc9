#include "loom/train/trainer.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <thread>

#include "loom/comm/communicator.hpp"
#include "loom/comm/device.hpp"
#include "loom/comm/rank_settings.hpp"
#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/format.hpp"
#include "loom/core/job_info.hpp"
#include "loom/core/log.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/planner.hpp"
#include "loom/data/tokenizer.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/hf_io.hpp"
#include "loom/model/lora.hpp"
#include "loom/model/loss.hpp"
#include "loom/model/memory.hpp"
#include "loom/model/safetensors.hpp"
#include "loom/train/agreement.hpp"
#include "loom/train/balancer.hpp"
#include "loom/train/batch_tensors.hpp"
#include "loom/train/checkpoint.hpp"
#include "loom/train/cpu_memory.hpp"
#include "loom/train/device_timer.hpp"
#include "loom/train/eval_samples.hpp"
#include "loom/train/evaluate.hpp"
#include "loom/train/grad_sync.hpp"
#include "loom/train/loss_scaler.hpp"
#include "loom/train/metrics.hpp"
#include "loom/train/model_setup.hpp"
#include "loom/train/optimizer.hpp"
#include "loom/train/resume_settings.hpp"
#include "loom/train/run_record.hpp"
#include "loom/train/schedule.hpp"

namespace loom {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void onStopSignal(int sig) { g_stop_signal = sig; }

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

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

/// Waits for the work queued on this thread's current stream of `device` (not for other
/// streams: gradient all-reduces on a communication stream may still be running).
void waitForCurrentStream(const c10::Device& device) {
  if (device.is_cpu()) return;
  c10::impl::VirtualGuardImpl impl(device.type());
  impl.getStream(device).synchronize();
}

class Trainer {
 public:
  Trainer(World& world, const Config& config) : world_(world), config_(config) {}

  int run() {
    // First thing: a stop signal during set-up (Slurm's notice, Ctrl-C, kill) must not kill
    // the process mid-write; it ends the run cleanly at the next set-up stage instead.
    std::signal(SIGTERM, onStopSignal);
    std::signal(SIGUSR1, onStopSignal);
    std::signal(SIGINT, onStopSignal);
    signalForTest("setup");
    setupRanks();
    if (stopRequested("start")) return kExitOk;
    setupModel();
    if (stopRequested("loading the model")) return kExitOk;
    setupData();
    const std::optional<fs::path> resume = checkpointToResume();
    checkAgreement(resume);
    setupOptimizer();
    if (resume) resumeFrom(*resume);
    if (stopRequested("opening the data")) return kExitOk;
    writeRunRecord();
    if (config_.cluster.balance == Balance::kAuto && !weights_restored_) probeBalance();
    return loop();
  }

 private:
  // ---- set-up -------------------------------------------------------------------------

  /// Collective: whether any rank received a stop signal; if so, logged as stopping during
  /// set-up (nothing was trained, so nothing is checkpointed).
  bool stopRequested(const char* stage) {
    if (!world_.anyTrue(g_stop_signal.load() != 0)) return false;
    LOOM_WARN("stop signal received during set-up (after " << stage
                                                           << "): exiting without training");
    return true;
  }

  /// Test hook LOOM_TEST_SIGNAL_AT=setup: rank 0 sends itself SIGUSR1 as set-up begins.
  void signalForTest(const char* when) const {
    const char* spec = std::getenv("LOOM_TEST_SIGNAL_AT");
    if (spec && std::string(spec) == when && world_.isRoot()) std::raise(SIGUSR1);
  }

  void setupRanks() {
    const auto gpus = listCudaDevices();
    settings_ =
        resolveRankSettings(config_, world_.rank(), world_.localRank(), world_.host(), gpus);
    for (const auto& j : world_.allGather(settings_.toJson())) {
      all_settings_.push_back(RankSettings::fromJson(j));
    }
    backend_ = resolveBackend(config_, all_settings_);
    device_ = settings_.onCuda() ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(std::stoi(
                                                               settings_.device.substr(5))))
                                 : c10::Device(c10::kCPU);
    dtype_ = scalarType(settings_.dtype);
    compute_timer_ = std::make_unique<DeviceTimer>(device_);
    for (const auto& g : gpus) {
      if (device_.is_cuda() && g.index == device_.index()) cuda_major_ = g.major;
    }
    if (!settings_.dtype_note.empty()) {
      LOOM_WARN("rank " << world_.rank() << " computes in " << toString(settings_.dtype) << ": "
                        << settings_.dtype_note);
    }
    // CPU ranks sharing a host share its cores, unless the user said otherwise.
    if (!settings_.onCuda() && !std::getenv("OMP_NUM_THREADS")) {
      const int cores = static_cast<int>(std::thread::hardware_concurrency());
      at::set_num_threads(std::max(1, cores / std::max(1, world_.localSize())));
    }
    // Count CPU tensor bytes from before the model exists, for metrics' peak_tensor_bytes.
    if (!settings_.onCuda()) trackCpuTensorMemory();
    estimateMemory();
    comm_ = makeCommunicator(backend_, world_, settings_.device);
    run_dir_ = config_.run.output_dir;
    job_ = readJobInfo();
    if (world_.isRoot()) {
      LOOM_INFO("job: " << job_.summary() << "; run directory " << run_dir_.string());
      LOOM_INFO("world: " << world_.size() << " rank(s), backend " << toString(backend_)
                          << ", balance " << toString(config_.cluster.balance));
      for (const auto& r : all_settings_) {
        LOOM_INFO("  rank " << r.rank << " on " << r.host << ": " << r.device
                            << (r.gpu_name.empty() ? "" : " (" + r.gpu_name + ")") << ", weight "
                            << r.weight << ", micro_batch " << r.micro_batch << ", "
                            << toString(r.dtype));
      }
    }
  }

  /// Collective, once everything is validated (model, data, agreement, resume point): nothing
  /// in run.output_dir changes before, so a refused run leaves an existing run as it was.
  /// Rank 0 writes the resolved config.yaml; every rank checks that it sees it.
  void writeRunRecord() {
    if (world_.isRoot()) {
      fs::create_directories(run_dir_);
      writeFileAtomic(run_dir_ / "config.yaml", resolvedConfigText(config_, job_));
    }
    std::vector<std::string> hosts;
    for (const auto& r : all_settings_) hosts.push_back(r.host);
    checkSharedRunDir(world_, config_, run_dir_, hosts,
                      world_.isRoot() ? resolvedConfigText(config_, job_) : "");
  }

  /// Every rank's memory estimate, logged by rank 0 before anything is loaded; a rank whose
  /// estimate exceeds its device's free memory warns (and says what to change).
  void estimateMemory() {
    checkModelFolder(config_);
    checkAdapterFolder(config_);
    const WorldMemory memory = gatherWorldMemory(world_, config_, all_settings_);
    for (size_t k = 0; k < memory.estimates.size(); ++k) {
      const MemoryEstimateBytes& m = memory.estimates[k];
      memory_estimate_.push_back({{"rank", all_settings_[k].rank},
                                  {"base_bytes", m.base_weights},
                                  {"tensors_bytes", m.tensors()},
                                  {"total_bytes", m.total()},
                                  {"free_bytes", memory.free_bytes[k]}});
    }
    if (world_.isRoot()) {
      for (const auto& line : memory.lines) LOOM_INFO("memory estimate: " << line);
    }
    const std::string& warning = memory.warnings[world_.rank()];
    if (!warning.empty()) LOOM_WARN("memory: " << warning);
  }

  void setupModel() {
    torch::manual_seed(config_.run.seed);  // the same LoRA initialisation on every rank
    ModelSetup setup = loom::setupModel(config_, device_, dtype_);
    model_ = setup.model;
    model_->setActivationCheckpointing(settings_.gradient_checkpointing);
    lora_ = setup.lora;
    spec_ = setup.spec;
    // Each rank's attention kernel for packed rows (GPU kinds differ), logged by rank 0.
    packed_attention_ =
        packedAttentionFor(device_.is_cuda(), cuda_major_, dtype_, model_->config().head_dim);
    model_->setAttention(packed_attention_);
    const auto kernels = world_.allGather(toString(packed_attention_));
    if (world_.isRoot()) {
      std::ostringstream line;
      for (size_t k = 0; k < kernels.size(); ++k) {
        line << (k ? "; " : "") << "rank " << k << " " << kernels[k];
      }
      LOOM_INFO("attention for packed rows: " << line.str() << " (rows of one document: "
                                              << toString(AttentionBackend::kSdpaCausal) << ")");
    }
    std::vector<std::string> names;
    std::vector<at::Tensor> params;
    for (const auto& item : model_->named_parameters()) {
      if (!item.value().requires_grad()) continue;
      names.push_back(item.key());
      params.push_back(item.value());
    }
    AdamWSettings adamw;
    adamw.weight_decay = config_.train.weight_decay;
    optimizer_ = std::make_unique<Optimizer>(names, params, adamw);
    names_ = optimizer_->names();
    params_ = optimizer_->params();
    masters_ = optimizer_->masters();
    // Every rank starts from rank 0's values (CPU and CUDA random generators differ).
    torch::NoGradGuard no_grad;
    for (auto& master : masters_) {
      auto m = master.detach();
      comm_->broadcast(m, 0);
    }
    optimizer_->copyMastersToParams();
    int64_t trainable = 0;
    for (const auto& p : params_) trainable += p.numel();
    // What the loaded model and its optimizer masters hold, before any step.
    loaded_bytes_ = device_.is_cuda() ? cudaAllocatedBytes(device_.index()) : cpuTensorBytes();
    LOOM_INFO("model " << config_.model.path << ": " << toString(config_.finetune.method) << ", "
                       << params_.size() << " trainable tensors, " << trainable
                       << " trainable parameters");
  }

  void setupData() {
    const int64_t vocab = model_->config().vocab_size;
    train_data_ = openDataset("data.train", config_.data.train, vocab);
    PlannerConfig pc;
    pc.seq_len = config_.data.seq_len;
    pc.global_batch_size = config_.train.global_batch_size.value_or(0);
    pc.global_batch_tokens = config_.train.global_batch_tokens.value_or(0);
    pc.seed = static_cast<uint64_t>(config_.run.seed);
    pc.packing = config_.data.packing;
    pc.pad_multiple = 8;
    planner_ = blameOn("data.train", [&] {
      return std::make_unique<BatchPlanner>(BatchPlanner::fromDataset(*train_data_, pc));
    });
    if (planner_->numTruncated() > 0) {
      LOOM_WARN(planner_->numTruncated() << " training samples are longer than data.seq_len ("
                                         << config_.data.seq_len << ") and will be truncated");
    }
    total_steps_ = config_.train.max_steps ? *config_.train.max_steps
                                           : planner_->stepsForEpochs(*config_.train.epochs);
    pad_id_ = static_cast<int32_t>(std::max<int64_t>(0, train_data_->info().pad_id));
    prefetcher_ = std::make_unique<Prefetcher>(*train_data_);
    if (config_.data.eval) {
      eval_data_ = openDataset("data.eval", *config_.data.eval, vocab);
      eval_planner_ = blameOn("data.eval", [&] {
        return std::make_unique<BatchPlanner>(BatchPlanner::fromDataset(
            *eval_data_, evalPlannerConfig(config_.data.seq_len, config_.data.packing)));
      });
    }
    if (config_.train.eval_prompts) {
      eval_samples_ = blameOn("train.eval_prompts", [&] {
        return std::make_unique<EvalSamples>(*config_.train.eval_prompts, config_.model.path,
                                             config_.train.eval_max_new_tokens);
      });
    }
    LOOM_INFO("data " << config_.data.train << ": " << train_data_->numSamples() << " samples, "
                      << total_steps_ << " steps of " << planner_->stepsInEpoch(0) << " per epoch");
  }

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
                                           int64_t vocab) {
    return blameOn(key, [&] { return std::make_unique<Hdf5Dataset>(path, vocab); });
  }

  void setupOptimizer() {
    grad_sync_ = std::make_unique<GradSync>(params_, *comm_, 25 << 20, masters_,
                                            config_.cluster.overlap_grad_sync);
    LOOM_INFO("gradient sync: " << grad_sync_->numElements() << " values in "
                                << grad_sync_->numBuckets() << " fp32 bucket(s), all-reduced "
                                << (grad_sync_->overlaps() ? "from backward as they fill"
                                                           : "after backward"));
    cursor_ = planner_->begin();
    std::vector<double> weights;
    for (const auto& r : all_settings_) weights.push_back(r.weight);
    balancer_ = std::make_unique<Balancer>(weights, config_.cluster.balance == Balance::kAuto);
    // One loss scale for the world: if any rank computes in fp16, every rank scales.
    const bool any_fp16 =
        std::any_of(all_settings_.begin(), all_settings_.end(),
                    [](const RankSettings& r) { return r.dtype == DType::kFP16; });
    scaler_ = LossScaler::forWorld(any_fp16);
    if (any_fp16 && world_.isRoot()) {
      LOOM_INFO("fp16 on some rank: every rank scales its loss by one dynamic loss scale");
    }
  }

  /// The checkpoint checkpoint.resume asks for, as this rank sees it (the ranks then check
  /// that they all see the same one: checkAgreement).
  std::optional<fs::path> checkpointToResume() const {
    const std::string& resume = config_.checkpoint.resume;
    if (resume == "auto") return newestCheckpoint(run_dir_ / "checkpoints");
    if (resume == "never") return std::nullopt;
    LOOM_INPUT_CHECK(fs::exists(fs::path(resume) / "trainer_state.json"),
                     "config error: " << config_.where("checkpoint.resume")
                                      << ": checkpoint.resume: '" << resume
                                      << "' is not a checkpoint folder (no trainer_state.json)");
    return fs::path(resume);
  }

  /// Collective: every rank read the same config, data, model and resume point, and the
  /// data was made with the model's tokenizer (agreement.hpp).
  void checkAgreement(const std::optional<fs::path>& resume) const {
    RankIdentity me;
    me.config_hash = identityHash(toYaml(config_));
    me.data_file = config_.data.train;
    const PlanIdentity& plan = planner_->identity();
    me.data_index_hash =
        identityHash(std::to_string(plan.num_samples) + ":" + std::to_string(plan.index_hash));
    me.data_tokenizer_hash = train_data_->info().tokenizer_hash;
    const fs::path model(config_.model.path);
    me.model_config_hash = identityHash(readFileOrThrow(model / "config.json", "model config"));
    me.model_tokenizer_hash = Tokenizer::fileHash(model);
    me.resume_from = resume ? resume->filename().string() : "";
    checkRanksAgree(world_, me);
    checkTokenizerMatches(me, config_.data.allow_tokenizer_mismatch, config_.where("data.train"));
  }

  void resumeFrom(const fs::path& checkpoint) {
    const std::optional<fs::path> from = checkpoint;
    const TrainerState state = readTrainerState(*from);
    if (state.config_hash != resumeHash(config_)) {
      const std::string changed = changedSettings(state.resume_settings, config_);
      LOOM_INPUT_CHECK(false, "checkpoint "
                                  << from->string() << " was written by a run with "
                                  << (changed.empty() ? "other model, data, batch or LoRA settings"
                                                      : "other settings: " + changed)
                                  << "; restore them, or use a new run.output_dir or "
                                     "set checkpoint.resume: never");
    }
    SafetensorsFile weights((*from / "trainable.safetensors").string());
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < names_.size(); ++i) {
      at::Tensor saved = weights.tensor(names_[i]);
      LOOM_INPUT_CHECK(saved.sizes() == masters_[i].sizes(),
                       (*from / "trainable.safetensors").string()
                           << ": tensor " << names_[i] << " has shape " << saved.sizes()
                           << ", the model needs " << masters_[i].sizes());
      masters_[i].copy_(saved);
    }
    optimizer_->copyMastersToParams();
    optimizer_->load(*from);
    try {
      cursor_ = PlanCursor::fromString(state.cursor);
      planner_->checkCursor(cursor_);
    } catch (const InputError& e) {
      throw InputError((*from / "trainer_state.json").string() + ": key 'cursor': " + e.what());
    }
    step_ = state.step;
    resumed_step_ = state.step;
    scaler_.restore(state.loss_scale, state.loss_scale_good_steps);
    if (static_cast<int>(state.weights.size()) == world_.size()) {
      balancer_->setWeights(state.weights);
      weights_restored_ = true;
    } else {
      LOOM_INFO("resuming on " << world_.size() << " ranks (checkpoint had " << state.world_size
                               << "): weights start from the config");
    }
    LOOM_INFO("resumed from " << from->string() << " at step " << step_);
  }

  /// balance: auto. Every rank times a forward/backward of the same shape (micro_batch
  /// rows of up to 512 tokens, two documents per row, random ids), after one untimed
  /// warm-up, and the weights start proportional to the measured tokens/s. Gradients go
  /// through autograd::grad and are dropped (beginStep clears anything accumulated).
  void probeBalance() {
    const int64_t len = std::min<int64_t>(config_.data.seq_len, 512);
    const int64_t rows = settings_.micro_batch;
    const auto on = torch::TensorOptions().device(device_);
    auto generator = at::make_generator<at::CPUGeneratorImpl>(config_.run.seed);
    DecoderInput input;
    input.tokens = torch::randint(model_->config().vocab_size, {rows, len}, generator,
                                  torch::TensorOptions().dtype(torch::kLong))
                       .to(device_);
    input.positions = torch::arange(len, on.dtype(torch::kLong)).expand({rows, len}).contiguous();
    input.documents = (input.positions >= len / 2).to(torch::kLong);
    const at::Tensor mask = torch::ones({rows, len}, on.dtype(torch::kUInt8));
    model_->train();
    auto once = [&] {
      at::Tensor hidden = model_->hidden(input);
      LossSum loss = causalLmLoss(hidden, model_->lmHeadWeight(), input.tokens, mask,
                                  input.documents, settings_.loss_chunk_tokens);
      torch::autograd::grad({loss.sum}, params_, {}, /*retain_graph=*/false,
                            /*create_graph=*/false, /*allow_unused=*/true);
      waitForCurrentStream(device_);
    };
    once();  // warm-up: first-call allocations and kernel selection
    const auto t0 = Clock::now();
    once();
    const double rate = static_cast<double>(rows * len) / std::max(1e-9, secondsSince(t0));
    at::Tensor all = comm_->allGather(torch::tensor({rate}, on.dtype(torch::kDouble))).to(at::kCPU);
    std::vector<double> rates;
    for (int k = 0; k < world_.size(); ++k) rates.push_back(all[k][0].item<double>());
    balancer_->probe(rates);
    std::ostringstream line;
    for (int k = 0; k < world_.size(); ++k) {
      line << " " << k << ": " << std::fixed << std::setprecision(0) << rates[k] << " tok/s -> "
           << std::setprecision(3) << balancer_->weights()[k] << ";";
    }
    LOOM_INFO("balancer probe (" << rows << " x " << len << " tokens per rank):" << line.str());
  }

  // ---- the loop -------------------------------------------------------------------------

  int loop() {
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
    while (step_ < total_steps_) {
      maybeFailForTest(world_.rank(), step_);
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

  StepResult trainStep() {
    StepResult r;
    const auto t0 = Clock::now();
    // Dropout draws from a generator seeded per (seed, step, rank): a resumed run draws the
    // same masks as an uninterrupted one, with nothing extra to checkpoint.
    torch::manual_seed(static_cast<uint64_t>(config_.run.seed) * 1000003ULL +
                       static_cast<uint64_t>(step_) * 7919ULL +
                       static_cast<uint64_t>(world_.rank()));
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
                       peakMemoryBytes(device_), sync_seconds, peakTensorBytes(device_),
                       busy_seconds, static_cast<double>(g_stop_signal.load())},
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

  /// This step's micro-batches, staged for the device: those prefetched during the previous
  /// step when they are for the same samples (the balancer may have re-weighted since),
  /// else read and staged now.
  std::vector<StagedBatch> stagedFor(const RankStepPlan& plan) {
    if (prefetched_) {
      Prefetched p = std::move(*prefetched_);
      prefetched_.reset();
      if (p.cursor == cursor_ && p.sample_ids == plan.sample_ids) return p.staged.get();
      p.staged.wait();  // stale: planned with other weights
    }
    return stageStep(plan, train_data_->readSamples(plan.sample_ids));
  }

  /// Assembles a rank's step into batch layouts and stages them in (pinned) host memory.
  std::vector<StagedBatch> stageStep(const RankStepPlan& plan, const SampleBatch& data) const {
    std::vector<StagedBatch> out;
    for (const MicroBatch& mb : planner_->assemble(plan, data, pad_id_)) {
      out.push_back(stage(mb, device_));
    }
    return out;
  }

  /// Starts reading the next step's share on the prefetch thread, planned with the current
  /// weights, and assembling and staging it on another, so both overlap this step's compute.
  void prefetchNextStep() {
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

  /// Test hook: LOOM_TEST_GRADS_DIR=DIR makes rank 0 write each step's reduced gradients
  /// (before clipping) to DIR/grads-<step>.safetensors, so tests can compare gradients
  /// across splits directly (Adam's normalisation would magnify rounding noise).
  void dumpGradientsForTest() {
    const char* dir = std::getenv("LOOM_TEST_GRADS_DIR");
    if (!dir || !world_.isRoot()) return;
    NamedTensors named;
    for (size_t i = 0; i < names_.size(); ++i) {
      named.emplace_back(names_[i], masters_[i].grad().detach().to(at::kCPU).clone());
    }
    fs::create_directories(dir);
    saveSafetensors(fs::path(dir) / ("grads-" + std::to_string(step_) + ".safetensors"), named, {});
  }

  void report(const StepResult& r, Clock::time_point start, int64_t first_step) {
    if (r.reweighted) {
      std::ostringstream w;
      for (double x : balancer_->weights()) w << " " << std::fixed << std::setprecision(3) << x;
      LOOM_INFO("balancer: new weights" << w.str() << " (measured tokens/s per rank)");
    }
    if (!world_.isRoot()) return;
    if (r.finite) metrics_->recordLoss(step_, r.loss);
    if (step_ % config_.train.log_every != 0 && step_ != total_steps_) return;
    const double elapsed = secondsSince(start);
    const double per_step = elapsed / static_cast<double>(step_ - first_step);
    tokens_seen_ += r.tokens;
    nlohmann::json ranks = nlohmann::json::array();
    const auto& weights = balancer_->weights();
    const double weight_total = std::accumulate(weights.begin(), weights.end(), 0.0);
    std::ostringstream shares;
    for (int k = 0; k < world_.size(); ++k) {
      ranks.push_back({{"rank", k},
                       {"weight", weights[k]},
                       {"tokens", r.rank_tokens[k]},
                       {"compute_s", r.rank_seconds[k]},
                       {"busy_s", r.rank_busy_seconds[k]},
                       {"data_wait_s", r.rank_data_seconds[k]},
                       {"grad_sync_s", r.rank_sync_seconds[k]},
                       {"peak_memory_bytes", r.rank_memory[k]},
                       {"peak_tensor_bytes", r.rank_tensor_peak[k]}});
      shares << " " << k << ":" << std::fixed << std::setprecision(0)
             << 100.0 * weights[k] / weight_total << "%/" << std::setprecision(2)
             << r.rank_seconds[k] << "s";
    }
    nlohmann::json line = {{"step", step_},
                           {"loss", r.loss},
                           {"lr", r.lr},
                           {"grad_norm", r.grad_norm},
                           {"tokens", r.tokens},
                           {"step_s", r.step_seconds},
                           {"tokens_per_s", r.tokens / std::max(1e-9, r.step_seconds)},
                           {"skipped", !r.finite},
                           {"ranks", ranks}};
    if (scaler_.enabled()) line["loss_scale"] = scaler_.scale();
    metrics_->write(line.dump());
    std::vector<std::pair<std::string, double>> board = {
        {"train/loss", r.loss},
        {"train/lr", r.lr},
        {"train/grad_norm", r.grad_norm},
        {"train/tokens_per_s", r.tokens / std::max(1e-9, r.step_seconds)},
        {"train/step_s", r.step_seconds}};
    if (scaler_.enabled()) board.emplace_back("train/loss_scale", scaler_.scale());
    for (int k = 0; k < world_.size(); ++k) {
      const std::string rank = "rank" + std::to_string(k) + "/";
      board.emplace_back(rank + "weight", weights[k] / weight_total);
      board.emplace_back(rank + "compute_s", r.rank_seconds[k]);
      board.emplace_back(rank + "peak_memory_gib", r.rank_memory[k] / double(1LL << 30));
    }
    metrics_->scalars(step_, board);
    char head[200];
    std::snprintf(head, sizeof(head),
                  "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s |",
                  static_cast<long long>(step_), static_cast<long long>(total_steps_), r.loss, r.lr,
                  r.tokens / std::max(1e-9, r.step_seconds),
                  formatDuration(per_step * static_cast<double>(total_steps_ - step_)).c_str());
    LOOM_INFO(head << " ranks" << shares.str());
  }

  void evaluate() {
    if (eval_planner_) evaluateLoss();
    if (eval_samples_ && world_.isRoot()) answerEvalPrompts();
  }

  /// train.eval_prompts answered on rank 0: in the log, metrics.jsonl and TensorBoard.
  void answerEvalPrompts() {
    const auto started = Clock::now();
    const auto answers = eval_samples_->answer(*model_);
    for (size_t i = 0; i < answers.size(); ++i) {
      LOOM_INFO("sample at step " << step_ << " [" << i + 1 << "] " << eval_samples_->question(i)
                                  << "\n  -> " << answers[i].text);
    }
    metrics_->write(eval_samples_->record(step_, answers).dump());
    metrics_->text("eval/samples", step_, eval_samples_->markdown(answers));
    LOOM_INFO("eval prompts answered in " << std::fixed << std::setprecision(1)
                                          << secondsSince(started) << " s");
  }

  void evaluateLoss() {
    EvalOptions options;
    options.micro_batch = settings_.micro_batch;
    options.loss_chunk_tokens = settings_.loss_chunk_tokens;
    // This rank's weighted share of data.eval; sums are all-reduced, then divided once.
    const EvalResult local =
        evaluateSamples(*model_, *eval_data_, *eval_planner_,
                        evalShare(*eval_planner_, balancer_->weights(), world_.rank()), options);
    at::Tensor totals = torch::tensor({local.loss_sum, static_cast<double>(local.loss_tokens)},
                                      torch::TensorOptions().dtype(torch::kDouble).device(device_));
    comm_->allReduceSum(totals);
    totals = totals.to(torch::kCPU);
    const double loss = totals[0].item<double>() / std::max(1.0, totals[1].item<double>());
    if (world_.isRoot()) {
      LOOM_INFO("eval at step " << step_ << ": loss " << loss << ", perplexity " << std::exp(loss)
                                << " over " << static_cast<int64_t>(totals[1].item<double>())
                                << " tokens");
      metrics_->recordEval(step_, loss);
      metrics_->scalars(step_, {{"eval/loss", loss}, {"eval/perplexity", std::exp(loss)}});
      metrics_->write(nlohmann::json({{"step", step_},
                                      {"eval_loss", loss},
                                      {"eval_perplexity", std::exp(loss)},
                                      {"eval_tokens", totals[1].item<double>()}})
                          .dump());
    }
  }

  void checkpoint() {
    const auto started = std::chrono::steady_clock::now();
    if (world_.isRoot()) {
      TrainerState state;
      state.step = step_;
      state.cursor = cursor_.toString();
      state.weights = balancer_->weights();
      state.loss_scale = scaler_.scale();
      state.loss_scale_good_steps = scaler_.goodSteps();
      state.config_hash = resumeHash(config_);
      for (const auto& [key, value] : resumeSettings(config_)) state.resume_settings[key] = value;
      state.world_size = world_.size();
      const fs::path dir = writeCheckpoint(
          run_dir_ / "checkpoints", state, config_.checkpoint.keep, [&](const fs::path& tmp) {
            NamedTensors named;
            for (size_t i = 0; i < names_.size(); ++i)
              named.emplace_back(names_[i], masters_[i].detach().to(at::kCPU));
            saveSafetensors(tmp / "trainable.safetensors", named, {});
            optimizer_->save(tmp);
            if (lora_) saveAdapter(*model_, spec_, tmp / "adapter", config_.model.path);
          });
      uintmax_t bytes = 0;
      for (const auto& e : fs::recursive_directory_iterator(dir)) {
        if (e.is_regular_file()) bytes += e.file_size();
      }
      char seconds[32];
      std::snprintf(seconds, sizeof(seconds), "%.1f", secondsSince(started));
      LOOM_INFO("checkpoint " << dir.string() << " (" << gibText(bytes) << ") written in "
                              << seconds << " s");
    }
    // The other ranks wait here while rank 0 writes (bounded by the collective deadline).
    world_.barrier();
  }

  void saveFinal() {
    if (!world_.isRoot()) return;
    const fs::path target = run_dir_ / (lora_ ? "adapter" : "model");
    const fs::path tmp =
        run_dir_ / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()));
    removeTree(tmp);
    if (lora_) {
      saveAdapter(*model_, spec_, tmp, config_.model.path);
    } else {
      saveFullModel(*model_, tmp, config_.model.path, dtype_ == at::kFloat ? at::kFloat : dtype_,
                    5LL << 30);
    }
    fsyncTree(tmp);
    removeTree(target);
    fs::rename(tmp, target);
    fsyncPath(run_dir_);
    LOOM_INFO((lora_ ? "adapter" : "model")
              << " written to " << target.string()
              << (lora_ ? " (PEFT layout)" : " (Hugging Face folder)"));
  }

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
  std::vector<at::Tensor> params_;   // trainable parameters, in the model's dtype
  std::vector<at::Tensor> masters_;  // their fp32 masters (the same tensor when fp32)

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

}  // namespace

int runTraining(World& world, const Config& config) {
  Trainer trainer(world, config);
  return trainer.run();
}

}  // namespace loom
