#include "loom/core/job_info.hpp"

#include <cstdlib>

namespace loom {

std::string JobInfo::summary() const {
  if (!inJob()) return "no scheduler job";
  std::string s = scheduler + " job " + job_id;
  if (!array_task_id.empty()) s += " (array " + array_job_id + "_" + array_task_id + ")";
  if (!job_name.empty()) s += " '" + job_name + "'";
  s += ", restart " + std::to_string(restart_count);
  if (!partition.empty()) s += ", partition " + partition;
  if (!node_list.empty()) s += ", nodes " + node_list;
  return s;
}

nlohmann::json JobInfo::toJson() const {
  auto text = [](const std::string& v) { return v.empty() ? nlohmann::json() : nlohmann::json(v); };
  return {{"scheduler", text(scheduler)},       {"job_id", text(job_id)},
          {"array_job_id", text(array_job_id)}, {"array_task_id", text(array_task_id)},
          {"restart_count", restart_count},     {"job_name", text(job_name)},
          {"partition", text(partition)},       {"node_list", text(node_list)}};
}

JobInfo readJobInfo(const EnvLookup& lookup) {
  JobInfo job;
  auto get = [&](const char* name) { return lookup(name).value_or(""); };
  job.job_id = get("SLURM_JOB_ID");
  if (job.job_id.empty()) job.job_id = get("SLURM_JOBID");  // older Slurm
  if (job.job_id.empty()) return job;
  job.scheduler = "slurm";
  job.array_job_id = get("SLURM_ARRAY_JOB_ID");
  job.array_task_id = get("SLURM_ARRAY_TASK_ID");
  job.job_name = get("SLURM_JOB_NAME");
  job.partition = get("SLURM_JOB_PARTITION");
  job.node_list = get("SLURM_JOB_NODELIST");
  const std::string restarts = get("SLURM_RESTART_COUNT");
  char* end = nullptr;
  const long long n = std::strtoll(restarts.c_str(), &end, 10);
  if (!restarts.empty() && *end == '\0' && n >= 0) job.restart_count = n;
  return job;
}

}  // namespace loom
