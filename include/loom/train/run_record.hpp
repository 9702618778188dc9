#pragma once
// What a training run records about itself in its run directory: the resolved config (with the
// scheduler's job that wrote it), the header record of each start in metrics.jsonl, and the
// check that every rank sees the directory rank 0 writes (a shared filesystem).

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/core/job_info.hpp"

namespace loom {

/// The text of config.yaml: a comment naming the Loom version and the job (a comment, so the
/// file still loads as a config), then every key with its default filled in.
std::string resolvedConfigText(const Config& config, const JobInfo& job);

/// The first record of each start in metrics.jsonl: {"run": {"job": {...}, "start_step",
/// "world_size", "hosts", "version"}}. A requeued job appends to the same file; this says which
/// job, and which restart of it, the steps after it come from.
nlohmann::json runRecord(const JobInfo& job, int64_t start_step,
                         const std::vector<std::string>& hosts);

/// Collective. When ranks run on several hosts (`hosts`: one per rank), each checks that
/// `run_dir`/config.yaml holds `root_text`, what rank 0 wrote there; otherwise every rank
/// throws InputError naming run.output_dir (checkpoints are written by rank 0 and read by all).
void checkSharedRunDir(const World& world, const Config& config,
                       const std::filesystem::path& run_dir, const std::vector<std::string>& hosts,
                       const std::string& root_text);

}  // namespace loom
