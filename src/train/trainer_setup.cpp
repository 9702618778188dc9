// Trainer set-up (trainer_impl.hpp): ranks and devices, memory estimate, model, data,
// optimizer, the agreement between ranks, resuming from a checkpoint, the balancer's probe.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>

#include "loom/comm/communicator.hpp"
#include "loom/comm/device.hpp"
#include "loom/comm/rank_settings.hpp"
#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/job_info.hpp"
#include "loom/core/log.hpp"
#include "loom/data/hdf5_dataset.hpp"
#include "loom/data/planner.hpp"
#include "loom/data/tokenizer.hpp"
#include "loom/model/decoder.hpp"
#include "loom/model/loss.hpp"
#include "loom/model/memory.hpp"
#include "loom/model/safetensors.hpp"
#include "loom/train/agreement.hpp"
#include "loom/train/balancer.hpp"
#include "loom/train/checkpoint.hpp"
#include "loom/train/cpu_memory.hpp"
#include "loom/train/device_timer.hpp"
#include "loom/train/eval_samples.hpp"
#include "loom/train/evaluate.hpp"
#include "loom/train/grad_sync.hpp"
#include "loom/train/loss_scaler.hpp"
#include "loom/train/model_setup.hpp"
#include "loom/train/optimizer.hpp"
#include "loom/train/resume_settings.hpp"
#include "loom/train/run_record.hpp"
#include "trainer_impl.hpp"

namespace loom::detail {

bool Trainer::stopRequested(const char* stage) {
  if (!world_.anyTrue(g_stop_signal.load() != 0)) return false;
  LOOM_WARN("stop signal received during set-up (after " << stage << "): exiting without training");
  return true;
}

void Trainer::signalForTest(const char* when) const {
  const char* spec = std::getenv("LOOM_TEST_SIGNAL_AT");
  if (spec && std::string(spec) == when && world_.isRoot()) std::raise(SIGUSR1);
}

void Trainer::setupRanks() {
  const auto gpus = listCudaDevices();
  settings_ = resolveRankSettings(config_, world_.rank(), world_.localRank(), world_.host(), gpus);
  for (const auto& j : world_.allGather(settings_.toJson())) {
    all_settings_.push_back(RankSettings::fromJson(j));
  }
  backend_ = resolveBackend(config_, all_settings_);
  device_ = settings_.onCuda()
                ? c10::Device(c10::kCUDA,
                              static_cast<c10::DeviceIndex>(std::stoi(settings_.device.substr(5))))
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

void Trainer::writeRunRecord() {
  if (world_.isRoot()) {
    fs::create_directories(run_dir_);
    writeFileAtomic(run_dir_ / "config.yaml", resolvedConfigText(config_, job_));
  }
  std::vector<std::string> hosts;
  for (const auto& r : all_settings_) hosts.push_back(r.host);
  checkSharedRunDir(world_, config_, run_dir_, hosts,
                    world_.isRoot() ? resolvedConfigText(config_, job_) : "");
}

void Trainer::estimateMemory() {
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

void Trainer::setupModel() {
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
  // LoRA in a 16-bit compute dtype: autograd trains 16-bit copies of the adapter factors,
  // whose masters are the fp32 factors themselves (no cast of A and B per micro-batch).
  const auto copies = makeLoraComputeCopies(*model_, dtype_);  // none without LoRA
  std::vector<std::string> names;
  std::vector<at::Tensor> params, masters;
  for (const auto& item : model_->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    names.push_back(item.key());
    const auto copy = copies.find(item.key());
    params.push_back(copy == copies.end() ? item.value() : copy->second);
    masters.push_back(copy == copies.end() ? at::Tensor() : item.value());
  }
  AdamWSettings adamw;
  adamw.weight_decay = config_.train.weight_decay;
  optimizer_ = std::make_unique<Optimizer>(names, params, adamw, masters);
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

void Trainer::setupData() {
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

std::unique_ptr<Hdf5Dataset> Trainer::openDataset(const std::string& key, const std::string& path,
                                                  int64_t vocab) {
  return blameOn(key, [&] { return std::make_unique<Hdf5Dataset>(path, vocab); });
}

void Trainer::setupOptimizer() {
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
  const bool any_fp16 = std::any_of(all_settings_.begin(), all_settings_.end(),
                                    [](const RankSettings& r) { return r.dtype == DType::kFP16; });
  scaler_ = LossScaler::forWorld(any_fp16);
  if (any_fp16 && world_.isRoot()) {
    LOOM_INFO("fp16 on some rank: every rank scales its loss by one dynamic loss scale");
  }
}

std::optional<fs::path> Trainer::checkpointToResume() const {
  const std::string& resume = config_.checkpoint.resume;
  if (resume == "auto") return newestCheckpoint(run_dir_ / "checkpoints");
  if (resume == "never") return std::nullopt;
  LOOM_INPUT_CHECK(fs::exists(fs::path(resume) / "trainer_state.json"),
                   "config error: " << config_.where("checkpoint.resume")
                                    << ": checkpoint.resume: '" << resume
                                    << "' is not a checkpoint folder (no trainer_state.json)");
  return fs::path(resume);
}

void Trainer::checkAgreement(const std::optional<fs::path>& resume) const {
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

void Trainer::resumeFrom(const fs::path& checkpoint) {
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

void Trainer::probeBalance() {
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
    LossSum loss = causalLmLoss(hidden, model_->lmHeadWeight(), input.tokens, mask, input.documents,
                                settings_.loss_chunk_tokens);
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

}  // namespace loom::detail
