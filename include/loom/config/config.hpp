#pragma once
// The run configuration: one plain struct per section of the YAML file, each validated
// when loaded (types, ranges, enums, required and mutually exclusive keys, unknown keys
// with a "did you mean"). Every error is a loom::InputError naming the file, line and
// column (or the --set override), the key path, what was found and what is allowed.
//
// Schema (README.md has the full reference with defaults):
//   run:        {name, output_dir, seed}
//   model:      {path, dtype: bf16|fp16|fp32, gradient_checkpointing}
//   finetune:   {method: lora|qlora|full, adapter, lora: {r, alpha, dropout, targets, rslora}}
//   data:       {train, eval, seq_len, packing}
//   train:      {global_batch_tokens | global_batch_size, max_steps | epochs, lr, lr_schedule,
//                warmup_steps, weight_decay, max_grad_norm, eval_every, log_every,
//                eval_prompts, eval_max_new_tokens}
//   checkpoint: {every, keep, resume: auto|never|<path>}
//   cluster:    {backend: auto|nccl|mpi, balance: auto|static, overlap_grad_sync,
//                collective_timeout_s,
//                ranks: [{match: {host, local_rank, gpu}, device, weight, micro_batch, dtype,
//                         loss_chunk_tokens, gradient_checkpointing}]}
//
// Paths (run.output_dir, model.path, finetune.adapter, data.train, data.eval,
// checkpoint.resume) may hold environment placeholders, `runs/${SLURM_JOB_ID}` or
// `${NAME:-default}` (core/env_expand.hpp), expanded when the file is read; an unset
// variable is a config error at that key.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace loom {

enum class DType { kBF16, kFP16, kFP32 };
enum class FinetuneMethod { kLora, kQLora, kFull };
enum class LrSchedule { kCosine, kLinear, kConstant };
enum class Backend { kAuto, kNccl, kMpi };
enum class Balance { kAuto, kStatic };

std::string toString(DType v);
std::string toString(FinetuneMethod v);
std::string toString(LrSchedule v);
std::string toString(Backend v);
std::string toString(Balance v);

/// The projection names LoRA may target; `all-linear` means all of them.
const std::vector<std::string>& loraTargetNames();

struct RunConfig {
  std::string name = "loom";
  std::string output_dir = "runs/loom";  ///< placeholders already expanded
  int64_t seed = 1234;
};

struct ModelConfig {
  std::string path;  ///< Hugging Face model folder (required)
  DType dtype = DType::kBF16;
  bool gradient_checkpointing = false;
};

struct LoraConfig {
  int64_t r = 16;
  double alpha = 32.0;
  double dropout = 0.05;
  std::vector<std::string> targets;  ///< resolved: `all-linear` expands to every projection
  bool rslora = false;
};

struct FinetuneConfig {
  FinetuneMethod method = FinetuneMethod::kLora;
  std::optional<std::string> adapter;  ///< PEFT folder to start from or evaluate
  LoraConfig lora;
};

struct DataConfig {
  std::string train;  ///< pre-tokenized HDF5 file (required)
  std::optional<std::string> eval;
  int64_t seq_len = 2048;
  bool packing = true;
  /// Train on a dataset whose recorded tokenizer is not the model's (refused otherwise).
  bool allow_tokenizer_mismatch = false;
};

struct TrainConfig {
  std::optional<int64_t> global_batch_tokens;  ///< exactly one of these two is set
  std::optional<int64_t> global_batch_size;
  std::optional<int64_t> max_steps;  ///< exactly one of these two is set
  std::optional<int64_t> epochs;
  double lr = 2e-4;
  LrSchedule lr_schedule = LrSchedule::kCosine;
  int64_t warmup_steps = 0;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  ///< 0 disables clipping
  int64_t eval_every = 0;      ///< 0: evaluate only at the end (when data.eval is set)
  int64_t log_every = 1;
  /// A prompts file (data/prompts.hpp): at each evaluation rank 0 answers these greedily and
  /// records the answers in metrics.jsonl, the log and TensorBoard.
  std::optional<std::string> eval_prompts;
  int64_t eval_max_new_tokens = 64;  ///< the length of those answers
  /// Steps traced with torch's profiler (train/step_profiler.hpp), from step profile_start
  /// (1-based); 0: none.
  int64_t profile_steps = 0;
  int64_t profile_start = 3;
};

struct CheckpointConfig {
  int64_t every = 0;  ///< 0: only at the end
  int64_t keep = 2;
  std::string resume = "auto";  ///< auto | never | path to a step-N folder
};

/// One entry of cluster.ranks: settings for the ranks its `match` selects. Later entries
/// override earlier ones field by field; unset fields keep the defaults.
struct RankRule {
  std::optional<std::string> match_host;    ///< exact hostname
  std::optional<int64_t> match_local_rank;  ///< rank index within its host
  std::optional<std::string> match_gpu;     ///< case-insensitive substring of the GPU name
  std::optional<std::string> device;        ///< cpu | cuda:N
  std::optional<double> weight;
  std::optional<int64_t> micro_batch;
  std::optional<DType> dtype;
  std::optional<int64_t> loss_chunk_tokens;    ///< tokens per chunk of the chunked loss
  std::optional<bool> gradient_checkpointing;  ///< overrides model.gradient_checkpointing
};

struct ClusterConfig {
  Backend backend = Backend::kAuto;
  Balance balance = Balance::kAuto;
  /// All-reduce gradient buckets from backward hooks as they fill (overlapping backward)
  /// instead of all at once after it.
  bool overlap_grad_sync = true;
  /// How long any collective (all-reduce, all-gather, broadcast, barrier; NCCL or MPI) may
  /// wait for the other ranks before the job ends with an error naming it: a stalled peer
  /// must not hang the job. Must exceed the longest legitimate wait (a checkpoint write or
  /// evaluation on one rank while the others wait).
  double collective_timeout_s = 600.0;
  std::vector<RankRule> ranks;
};

struct Config {
  RunConfig run;
  ModelConfig model;
  FinetuneConfig finetune;
  DataConfig data;
  TrainConfig train;
  CheckpointConfig checkpoint;
  ClusterConfig cluster;

  std::string source_file;  ///< the YAML file it came from
  /// Where each key was set ("file.yaml:12:5" or "--set train.lr=3e-4"), by key path, so
  /// later checks (a missing model folder, say) can point at the line to fix.
  std::map<std::string, std::string> locations;

  /// The location of `key_path` (or of the file, if the key was defaulted).
  std::string where(const std::string& key_path) const;
};

/// Loads and validates `path`, applying `overrides` ("key.path=value", the value parsed
/// as YAML) before validation, so overrides obey the same rules. Throws InputError.
Config loadConfig(const std::string& path, const std::vector<std::string>& overrides = {});

/// Same, from YAML text; `source_name` is what error messages call the file.
Config parseConfig(const std::string& yaml_text, const std::string& source_name,
                   const std::vector<std::string>& overrides = {});

/// The resolved config (every default filled in) as YAML; loads back to an equal Config.
std::string toYaml(const Config& config);

}  // namespace loom
