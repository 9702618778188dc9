#include "loom/train/run_record.hpp"

#include <gtest/gtest.h>

namespace loom {
namespace {

const char* kMinimal = R"(run: {output_dir: 'runs/${LOOM_RUN_RECORD_JOB}'}
model: {path: /models/qwen3}
data: {train: /data/train.h5}
train: {global_batch_tokens: 4096, max_steps: 10}
)";

JobInfo slurmJob() {
  std::map<std::string, std::string> env = {{"SLURM_JOB_ID", "4242"},
                                            {"SLURM_ARRAY_JOB_ID", "4240"},
                                            {"SLURM_ARRAY_TASK_ID", "2"},
                                            {"SLURM_RESTART_COUNT", "1"}};
  return readJobInfo([env](const std::string& name) -> std::optional<std::string> {
    const auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

TEST(RunRecord, ResolvedConfigNamesTheJobAndStillLoads) {
  ::setenv("LOOM_RUN_RECORD_JOB", "4242", 1);
  const Config c = parseConfig(kMinimal, "run.yaml");
  const std::string text = resolvedConfigText(c, slurmJob());
  EXPECT_NE(text.find("# slurm: job_id 4242, array_task_id 2, restart_count 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("output_dir: runs/4242\n"), std::string::npos) << text;
  ::unsetenv("LOOM_RUN_RECORD_JOB");  // the resolved file needs no environment
  EXPECT_EQ(toYaml(parseConfig(text, "config.yaml")), toYaml(c));
  EXPECT_EQ(resolvedConfigText(c, JobInfo{}).find("slurm"), std::string::npos);
}

TEST(RunRecord, HeaderRecordCarriesTheJobAndItsRestart) {
  const nlohmann::json r = runRecord(slurmJob(), 5, {"n1", "n1", "n2"})["run"];
  EXPECT_EQ(r["job"]["job_id"], "4242");
  EXPECT_EQ(r["job"]["array_task_id"], "2");
  EXPECT_EQ(r["job"]["restart_count"], 1);
  EXPECT_EQ(r["start_step"], 5);
  EXPECT_EQ(r["world_size"], 3);
  EXPECT_EQ(r["hosts"][2], "n2");
  EXPECT_TRUE(runRecord(JobInfo{}, 0, {"h"})["run"]["job"]["job_id"].is_null());
}

}  // namespace
}  // namespace loom
