#include "loom/train/run_record.hpp"

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/log.hpp"

namespace loom {

std::string resolvedConfigText(const Config& config, const JobInfo& job) {
  std::string head = "# resolved by trainer (Loom) " + std::string(LOOM_VERSION) + "\n";
  if (job.inJob()) {
    head += "# " + job.scheduler + ": job_id " + job.job_id + ", array_task_id " +
            (job.array_task_id.empty() ? "-" : job.array_task_id) + ", restart_count " +
            std::to_string(job.restart_count) + "\n";
  }
  return head + toYaml(config);
}

nlohmann::json runRecord(const JobInfo& job, int64_t start_step,
                         const std::vector<std::string>& hosts) {
  return {{"run",
           {{"job", job.toJson()},
            {"start_step", start_step},
            {"world_size", hosts.size()},
            {"hosts", hosts},
            {"version", LOOM_VERSION}}}};
}

void checkSharedRunDir(const World& world, const Config& config,
                       const std::filesystem::path& run_dir, const std::vector<std::string>& hosts,
                       const std::string& root_text) {
  bool one_host = true;
  for (const auto& h : hosts) one_host = one_host && h == hosts.at(0);
  if (one_host) return;
  // Gathered after rank 0 wrote the file: no rank reads it before it is there.
  const std::string expected = world.allGather(world.isRoot() ? root_text : "")[0];
  const std::filesystem::path file = run_dir / "config.yaml";
  std::string seen;
  try {
    seen = readFileOrThrow(file);
  } catch (const InputError&) {
  }
  const bool mine_bad = seen != expected;
  if (mine_bad) {
    LOOM_ERROR("rank " << world.rank() << " on " << world.host() << " does not see "
                       << file.string() << " that rank 0 on " << hosts.at(0) << " wrote");
  }
  LOOM_INPUT_CHECK(!world.anyTrue(mine_bad),
                   "config error: " << config.where("run.output_dir") << ": run.output_dir: '"
                                    << run_dir.string()
                                    << "' is not one folder shared by every node (ranks run on "
                                       "several hosts and each reads the checkpoints rank 0 "
                                       "writes); put it on a shared filesystem");
}

}  // namespace loom
