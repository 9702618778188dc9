#pragma once
// Per-rank settings: which device a rank computes on, its share weight, micro-batch size
// and compute dtype, resolved from `cluster.ranks` rules and what the device supports.

#include <string>
#include <vector>

#include "loom/comm/device.hpp"
#include "loom/config/config.hpp"

namespace loom {

struct RankSettings {
  int rank = 0;
  int local_rank = 0;
  std::string host;
  std::string device = "cpu";  ///< cpu | cuda:N
  std::string gpu_name;        ///< empty on CPU
  double weight = 1.0;
  int64_t micro_batch = 1;
  DType dtype = DType::kFP32;
  std::string dtype_note;               ///< why the dtype differs from model.dtype, if it does
  int64_t loss_chunk_tokens = 2048;     ///< tokens per chunk of the chunked loss
  bool gradient_checkpointing = false;  ///< model.gradient_checkpointing unless a rule says

  bool onCuda() const { return device.rfind("cuda", 0) == 0; }
  std::string toJson() const;
  static RankSettings fromJson(const std::string& text);
};

/// Resolves one rank's settings. Defaults: `cuda:<local_rank mod #gpus>` when GPUs are
/// visible, else `cpu`; weight 1; micro_batch 1; loss_chunk_tokens 2048;
/// gradient_checkpointing model.gradient_checkpointing; dtype model.dtype where the device
/// computes it natively (bf16 needs sm_80+; fp16 falls back to fp32 below sm_70; the CPU
/// computes in fp32). Rules of `cluster.ranks` that match (host, local_rank, GPU name
/// substring) apply in order, later ones overriding earlier ones. Throws InputError for a
/// device this host does not have or a dtype it cannot compute, naming the config line.
RankSettings resolveRankSettings(const Config& config, int rank, int local_rank,
                                 const std::string& host, const std::vector<GpuInfo>& gpus);

/// `cluster.backend` made concrete: auto is NCCL when every rank is on CUDA, MPI otherwise.
/// Throws InputError when nccl is requested but a rank is on the CPU.
Backend resolveBackend(const Config& config, const std::vector<RankSettings>& ranks);

}  // namespace loom
