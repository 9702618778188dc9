#include "loom/comm/rank_settings.hpp"

#include <cstdlib>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

#include "loom/core/error.hpp"

namespace loom {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

int cudaIndex(const std::string& device) {
  return device.size() > 5 ? std::stoi(device.substr(5)) : -1;
}

}  // namespace

std::string RankSettings::toJson() const {
  nlohmann::json j = {{"rank", rank},
                      {"local_rank", local_rank},
                      {"host", host},
                      {"device", device},
                      {"gpu_name", gpu_name},
                      {"weight", weight},
                      {"micro_batch", micro_batch},
                      {"dtype", toString(dtype)},
                      {"dtype_note", dtype_note},
                      {"loss_chunk_tokens", loss_chunk_tokens},
                      {"gradient_checkpointing", gradient_checkpointing}};
  return j.dump();
}

RankSettings RankSettings::fromJson(const std::string& text) {
  const auto j = nlohmann::json::parse(text);
  RankSettings s;
  s.rank = j.at("rank");
  s.local_rank = j.at("local_rank");
  s.host = j.at("host");
  s.device = j.at("device");
  s.gpu_name = j.at("gpu_name");
  s.weight = j.at("weight");
  s.micro_batch = j.at("micro_batch");
  const std::string d = j.at("dtype");
  s.dtype = d == "bf16" ? DType::kBF16 : d == "fp16" ? DType::kFP16 : DType::kFP32;
  s.dtype_note = j.at("dtype_note");
  s.loss_chunk_tokens = j.at("loss_chunk_tokens");
  s.gradient_checkpointing = j.at("gradient_checkpointing");
  return s;
}

RankSettings resolveRankSettings(const Config& config, int rank, int local_rank,
                                 const std::string& host, const std::vector<GpuInfo>& gpus) {
  RankSettings s;
  s.rank = rank;
  s.local_rank = local_rank;
  s.host = host;
  const int n_gpus = static_cast<int>(gpus.size());
  s.device = n_gpus > 0 ? "cuda:" + std::to_string(local_rank % n_gpus) : "cpu";

  s.gradient_checkpointing = config.model.gradient_checkpointing;
  std::optional<DType> explicit_dtype;
  int device_rule = -1;
  const auto& rules = config.cluster.ranks;
  for (size_t i = 0; i < rules.size(); ++i) {
    const RankRule& rule = rules[i];
    if (rule.match_host && *rule.match_host != host) continue;
    if (rule.match_local_rank && *rule.match_local_rank != local_rank) continue;
    if (rule.match_gpu) {
      // Matches the GPU this rank would use at this point of the resolution.
      const int idx = s.device == "cpu" ? -1
                                        : (s.device == "cuda" ? local_rank % std::max(1, n_gpus)
                                                              : cudaIndex(s.device));
      if (idx < 0 || idx >= n_gpus) continue;
      if (lower(gpus[idx].name).find(lower(*rule.match_gpu)) == std::string::npos) continue;
    }
    if (rule.device) {
      s.device = *rule.device;
      device_rule = static_cast<int>(i);
    }
    if (rule.weight) s.weight = *rule.weight;
    if (rule.micro_batch) s.micro_batch = *rule.micro_batch;
    if (rule.dtype) explicit_dtype = rule.dtype;
    if (rule.loss_chunk_tokens) s.loss_chunk_tokens = *rule.loss_chunk_tokens;
    if (rule.gradient_checkpointing) s.gradient_checkpointing = *rule.gradient_checkpointing;
  }
  const std::string device_key =
      device_rule >= 0 ? "cluster.ranks[" + std::to_string(device_rule) + "].device" : "";
  if (s.device == "cuda") {
    LOOM_INPUT_CHECK(n_gpus > 0, "config error: " << config.where(device_key) << ": " << device_key
                                                  << ": device 'cuda' on host " << host << " (rank "
                                                  << rank << "), which has no visible CUDA device");
    s.device = "cuda:" + std::to_string(local_rank % n_gpus);
  }
  if (s.onCuda()) {
    const int idx = cudaIndex(s.device);
    LOOM_INPUT_CHECK(idx >= 0 && idx < n_gpus,
                     "config error: " << config.where(device_key) << ": "
                                      << (device_key.empty() ? "device" : device_key) << ": "
                                      << s.device << " on host " << host << " (rank " << rank
                                      << "), which has " << n_gpus << " visible CUDA device(s)");
    s.gpu_name = gpus[idx].name;
  }

  // Compute dtype: what was asked for, where the device computes it natively.
  const DType wanted = explicit_dtype.value_or(config.model.dtype);
  s.dtype = wanted;
  // Test hook LOOM_TEST_CPU_DTYPE=1: CPU ranks keep a 16-bit dtype, so that the fp16 loss
  // scaling and 16-bit gradient paths run in CPU tests.
  const bool cpu_keeps_dtype = std::getenv("LOOM_TEST_CPU_DTYPE") != nullptr;
  if (!s.onCuda() && !cpu_keeps_dtype) {
    s.dtype = DType::kFP32;
    if (wanted != DType::kFP32) s.dtype_note = "the CPU computes in fp32";
  } else if (!s.onCuda()) {
    s.dtype_note = "test hook LOOM_TEST_CPU_DTYPE: the CPU computes in " + toString(wanted);
  } else {
    const GpuInfo& gpu = gpus[cudaIndex(s.device)];
    if (wanted == DType::kBF16 && !gpu.hasBf16()) {
      s.dtype = gpu.hasFastFp16() ? DType::kFP16 : DType::kFP32;
      s.dtype_note = gpu.name + " (" + gpu.capability() + ") has no bf16; " +
                     (gpu.hasFastFp16() ? "fp16 with dynamic loss scaling"
                                        : "fp32, since fp16 runs at 1/64 rate before sm_70");
    } else if (wanted == DType::kFP16 && !gpu.hasFastFp16() && !explicit_dtype) {
      s.dtype = DType::kFP32;
      s.dtype_note = gpu.name + " (" + gpu.capability() + ") runs fp16 at 1/64 rate; fp32";
    }
  }
  return s;
}

Backend resolveBackend(const Config& config, const std::vector<RankSettings>& ranks) {
  const bool all_cuda =
      std::all_of(ranks.begin(), ranks.end(), [](const RankSettings& r) { return r.onCuda(); });
  switch (config.cluster.backend) {
    case Backend::kAuto:
      return all_cuda ? Backend::kNccl : Backend::kMpi;
    case Backend::kNccl:
      for (const auto& r : ranks) {
        LOOM_INPUT_CHECK(r.onCuda(), "config error: " << config.where("cluster.backend")
                                                      << ": cluster.backend: nccl needs every rank "
                                                         "on a CUDA device, but rank "
                                                      << r.rank << " on " << r.host
                                                      << " is on the CPU; use backend mpi or auto");
      }
      return Backend::kNccl;
    case Backend::kMpi:
      return Backend::kMpi;
  }
  return Backend::kMpi;
}

}  // namespace loom
