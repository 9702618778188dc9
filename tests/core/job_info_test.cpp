#include "loom/core/job_info.hpp"

#include <gtest/gtest.h>

#include <map>

namespace loom {
namespace {

EnvLookup fakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(JobInfo, OutsideAJobThereIsNone) {
  const JobInfo job = readJobInfo(fakeEnv({{"HOME", "/root"}}));
  EXPECT_FALSE(job.inJob());
  EXPECT_EQ(job.summary(), "no scheduler job");
  EXPECT_TRUE(job.toJson()["job_id"].is_null());
  EXPECT_EQ(job.toJson()["restart_count"], 0);
}

TEST(JobInfo, SlurmVariablesAreRead) {
  const JobInfo job = readJobInfo(fakeEnv({{"SLURM_JOB_ID", "4242"},
                                           {"SLURM_ARRAY_JOB_ID", "4240"},
                                           {"SLURM_ARRAY_TASK_ID", "2"},
                                           {"SLURM_RESTART_COUNT", "1"},
                                           {"SLURM_JOB_NAME", "loom"},
                                           {"SLURM_JOB_PARTITION", "gpu"},
                                           {"SLURM_JOB_NODELIST", "n[01-02]"}}));
  EXPECT_TRUE(job.inJob());
  EXPECT_EQ(job.summary(),
            "slurm job 4242 (array 4240_2) 'loom', restart 1, partition gpu, nodes n[01-02]");
  const nlohmann::json j = job.toJson();
  EXPECT_EQ(j["scheduler"], "slurm");
  EXPECT_EQ(j["job_id"], "4242");
  EXPECT_EQ(j["array_task_id"], "2");
  EXPECT_EQ(j["restart_count"], 1);
  EXPECT_EQ(j["node_list"], "n[01-02]");
}

TEST(JobInfo, FirstRunHasNoRestartCountAndOddValuesCountAsZero) {
  EXPECT_EQ(readJobInfo(fakeEnv({{"SLURM_JOB_ID", "7"}})).restart_count, 0);
  EXPECT_EQ(
      readJobInfo(fakeEnv({{"SLURM_JOB_ID", "7"}, {"SLURM_RESTART_COUNT", "x"}})).restart_count, 0);
  EXPECT_EQ(readJobInfo(fakeEnv({{"SLURM_JOBID", "8"}})).job_id, "8");
  EXPECT_TRUE(readJobInfo(fakeEnv({{"SLURM_JOB_ID", "7"}})).toJson()["array_task_id"].is_null());
}

}  // namespace
}  // namespace loom
