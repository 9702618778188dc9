#pragma once
// The batch job a process runs in, as the scheduler's environment describes it. Loom reads
// Slurm's variables, so a run's log, metrics.jsonl and resolved config say which job (and
// which restart of it, after a requeue) wrote them.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "loom/core/env_expand.hpp"

namespace loom {

struct JobInfo {
  std::string scheduler;      ///< "slurm", or "" outside a scheduler's job
  std::string job_id;         ///< SLURM_JOB_ID
  std::string array_job_id;   ///< SLURM_ARRAY_JOB_ID ("" outside a job array)
  std::string array_task_id;  ///< SLURM_ARRAY_TASK_ID ("" outside a job array)
  int64_t restart_count = 0;  ///< SLURM_RESTART_COUNT: 0 first, then one more per requeue
  std::string job_name;       ///< SLURM_JOB_NAME
  std::string partition;      ///< SLURM_JOB_PARTITION
  std::string node_list;      ///< SLURM_JOB_NODELIST

  bool inJob() const { return !scheduler.empty(); }
  /// One line for the log: "slurm job 4242 (array 4240_2) 'loom', restart 1, partition gpu,
  /// nodes n[01-02]"; "no scheduler job" outside one.
  std::string summary() const;
  /// For metrics.jsonl: every field, strings left empty as null.
  nlohmann::json toJson() const;
};

/// Reads the job from the environment (`lookup`: the process environment by default).
/// A malformed SLURM_RESTART_COUNT counts as 0: the record must never stop a run.
JobInfo readJobInfo(const EnvLookup& lookup = processEnv);

}  // namespace loom
