// cluster/slurm/train.sbatch submitted to a real single-node Slurm (label slurm), started by
// tools/slurm_local.sh (the ctest fixture slurm_start / slurm_stop), with two CPU ranks on a
// tiny Qwen3 model:
//   (a) a plain job completes and writes its adapter;
//   (b) a job sent `scancel --batch --signal=USR1` after a few steps (what --signal=B:USR1@120
//       sends before the time limit) checkpoints, requeues itself, restarts, resumes, and ends
//       with an adapter equal to (a)'s byte for byte; its metrics record restart 0 and 1.
// Skips, printing why, where Slurm cannot run (not root).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/test_support.hpp"
#include "support/tiny_dataset.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::ProcessResult;
using testing::readFile;
using testing::runProcess;

// Long enough that the notice, sent after step 3, lands well before the end; short enough
// for CI (a step of 2 ranks x 2048 tokens takes tens of milliseconds on a CPU core).
constexpr int kSteps = 120;

fs::path slurmScript() { return testing::sourceDir() / "tools" / "slurm_local.sh"; }

ProcessResult sh(const std::string& command) { return runProcess({"bash", "-c", command}); }

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

/// Polls `ready` every 200 ms until it holds or `seconds` pass.
bool waitUntil(const std::function<bool()>& ready, double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return ready();
}

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

class Slurm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    started_here_ = runProcess({slurmScript().string(), "status"}).exit_code != 0;
    const auto t0 = Clock::now();
    const ProcessResult start = runProcess({slurmScript().string(), "start"});
    if (start.exit_code == 77) {
      skip_reason_ = trimmed(start.output);
      return;
    }
    if (start.exit_code != 0) {
      start_error_ = "tools/slurm_local.sh start failed:\n" + start.output;
      return;
    }
    std::printf("slurm started (%.1f s)\n", secondsSince(t0));
    const std::string env = trimmed(runProcess({slurmScript().string(), "env"}).output);
    const std::string prefix = "export SLURM_CONF=";
    if (env.rfind(prefix, 0) == 0) ::setenv("SLURM_CONF", env.substr(prefix.size()).c_str(), 1);
    dir_ = new testing::TempDir("loom-slurm-test");
    makeModelAndData();
  }

  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
    // Under ctest the fixture's slurm_stop does this (also after a crash); by hand, a Slurm
    // this process started is stopped here.
    if (started_here_ && skip_reason_.empty()) runProcess({slurmScript().string(), "stop"});
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    ASSERT_TRUE(model_error_.empty()) << model_error_;
  }

  static void makeModelAndData() {
    const fs::path model = dir_->path() / "model";
    const auto made =
        testing::runPythonScript("make_tiny_model.py", {model.string(), "qwen3", "--seed", "3"});
    if (made.exit_code != 0) {
      model_error_ = "make_tiny_model.py failed:\n" + made.output;
      return;
    }
    testing::writeTinyDataset(dir_->path() / "train.h5", 64, 5);
    // Two CPU ranks with fixed, unequal weights: a resumed run splits every batch as the
    // uninterrupted one did, so the two agree bit for bit. The run directory is named by the
    // job id (expanded by the trainer), the same for both runs of a requeued job.
    std::ostringstream y;
    y << "run: {name: slurm, output_dir: '" << (dir_->path() / "runs").string()
      << "/${SLURM_JOB_ID}', seed: 11}\n"
      << "model: {path: " << model.string() << ", dtype: fp32}\n"
      << "finetune: {method: lora, lora: {r: 4, alpha: 8, dropout: 0.1}}\n"
      << "data: {train: " << (dir_->path() / "train.h5").string() << ", seq_len: 64}\n"
      << "train: {global_batch_tokens: 2048, max_steps: " << kSteps
      << ", lr: 1.0e-2, warmup_steps: 2, log_every: 1}\n"
      << "checkpoint: {every: 0, keep: 2, resume: auto}\n"
      << "cluster:\n  backend: mpi\n  balance: static\n  ranks:\n"
      << "    - {device: cpu}\n    - {match: {local_rank: 1}, weight: 3}\n";
    dir_->write("slurm.yaml", y.str());
  }

  static fs::path dir() { return dir_->path(); }
  static fs::path runDir(const std::string& job) { return dir() / "runs" / job; }
  static fs::path jobLog(const std::string& name, const std::string& job) {
    return dir() / (name + "-" + job + ".out");
  }

  /// `sbatch --wait` of the real template for 2 CPU ranks on this node. The GPU request of the
  /// template is overridden (--gpus-per-task=0): this node has none.
  static ProcessResult submitAndWait(const std::string& name) {
    return runProcess({"env", "LOOM_TRAINER=" + testing::trainerPath(), "timeout", "600", "sbatch",
                       "--wait", "--job-name=" + name, "--nodes=1", "--ntasks-per-node=2",
                       "--cpus-per-task=1", "--gpus-per-task=0", "--time=15",
                       "--output=" + (dir() / "%x-%j.out").string(),
                       (testing::sourceDir() / "cluster" / "slurm" / "train.sbatch").string(),
                       (dir() / "slurm.yaml").string()});
  }

  /// "Submitted batch job N" -> N.
  static std::string jobIdOf(const ProcessResult& r) {
    const std::string key = "Submitted batch job ";
    const auto at = r.output.find(key);
    if (at == std::string::npos) return "";
    std::istringstream in(r.output.substr(at + key.size()));
    std::string id;
    in >> id;
    return id;
  }

  /// metrics.jsonl records of a run directory (a line still being written is left out).
  static std::vector<nlohmann::json> records(const std::string& job) {
    std::vector<nlohmann::json> out;
    std::ifstream in(runDir(job) / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }

  /// step -> loss (the last line for a step wins).
  static std::map<int64_t, double> losses(const std::string& job) {
    std::map<int64_t, double> out;
    for (const auto& j : records(job)) {
      if (j.contains("skipped") && j["loss"].is_number()) {
        out[j["step"].get<int64_t>()] = j["loss"].get<double>();
      }
    }
    return out;
  }

  /// The job's restart counts, one per start, from the metrics' run records.
  static std::vector<int64_t> restartCounts(const std::string& job) {
    std::vector<int64_t> out;
    for (const auto& j : records(job)) {
      if (j.contains("run")) {
        EXPECT_EQ(j["run"]["job"]["job_id"], job);
        out.push_back(j["run"]["job"]["restart_count"].get<int64_t>());
      }
    }
    return out;
  }

  static std::string show(const std::string& command) {
    const std::string out = sh(command + " 2>&1").output;
    std::printf("$ %s\n%s", command.c_str(), out.c_str());
    std::fflush(stdout);
    return out;
  }

  /// The plain run's job id, for the comparison in the preemption test.
  static inline std::string plain_job_;

 private:
  static inline std::string skip_reason_, start_error_, model_error_;
  static inline bool started_here_ = false;
  static inline testing::TempDir* dir_ = nullptr;
};

/// The lines of the job's log that tell its story (launch, notice, checkpoint, requeue,
/// restart, resume, end), for the test output.
std::string storyOf(const std::string& log) {
  std::istringstream in(log);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    for (const char* mark : {"train.sbatch", "signal", "checkpoint", "resumed", "job:", "REQUEUE",
                             "adapter", "error"}) {
      if (line.find(mark) != std::string::npos) {
        out += "  " + line + "\n";
        break;
      }
    }
  }
  return out;
}

TEST_F(Slurm, PlainJobCompletesAndWritesItsAdapter) {
  show("sinfo");
  const auto t0 = Clock::now();
  auto job = std::async(std::launch::async, [] { return submitAndWait("loom-plain"); });
  waitUntil([] { return sh("squeue -h -n loom-plain | grep -q .").exit_code == 0; }, 30);
  show("squeue");
  const ProcessResult r = job.get();
  const double seconds = secondsSince(t0);
  const std::string id = jobIdOf(r);
  ASSERT_FALSE(id.empty()) << r.output;
  const std::string log =
      fs::exists(jobLog("loom-plain", id)) ? readFile(jobLog("loom-plain", id)) : "(no job log)";
  ASSERT_EQ(r.exit_code, 0) << r.output << "\njob log:\n" << log;
  std::printf("plain job %s: %.1f s\n%s", id.c_str(), seconds, storyOf(log).c_str());
  EXPECT_TRUE(fs::exists(runDir(id) / "adapter" / "adapter_model.safetensors")) << log;
  EXPECT_TRUE(fs::exists(runDir(id) / "adapter" / "adapter_config.json")) << log;
  EXPECT_EQ(losses(id).size(), static_cast<size_t>(kSteps)) << log;
  EXPECT_EQ(restartCounts(id), std::vector<int64_t>{0});
  EXPECT_NE(log.find("2 rank(s), 1 node(s) x 2"), std::string::npos) << log;
  EXPECT_NE(log.find("job: slurm job " + id + " 'loom-plain', restart 0"), std::string::npos)
      << log;
  EXPECT_NE(log.find("training finished"), std::string::npos) << log;
  plain_job_ = id;
}

TEST_F(Slurm, PreemptedJobCheckpointsRequeuesAndResumesBitForBit) {
  ASSERT_FALSE(plain_job_.empty()) << "needs the plain job's adapter (run the whole suite)";
  const auto t0 = Clock::now();
  auto job = std::async(std::launch::async, [] { return submitAndWait("loom-preempted"); });
  std::string id;
  ASSERT_TRUE(waitUntil(
      [&] {
        id = trimmed(sh("squeue -h -n loom-preempted -o %i").output);
        return !id.empty();
      },
      60))
      << "the job never showed in squeue";
  ASSERT_TRUE(waitUntil([&] { return losses(id).size() >= 3; }, 180))
      << "no steps logged by job " << id;
  const size_t steps_before = losses(id).size();
  ASSERT_EQ(sh("scancel --batch --signal=USR1 " + id).exit_code, 0);
  // The job checkpoints, requeues itself and waits (BeginTime) to be started again.
  const bool requeued = waitUntil(
      [&] {
        const std::string s = sh("scontrol show job " + id).output;
        return s.find("JobState=PENDING") != std::string::npos &&
               s.find("Restarts=1") != std::string::npos;
      },
      120);
  show("squeue -o '%.8i %.16j %.8T %.10r %.20S'");
  ASSERT_TRUE(requeued) << sh("scontrol show job " + id).output
                        << readFile(jobLog("loom-preempted", id));
  const auto checkpointed = losses(id);
  ASSERT_LT(checkpointed.rbegin()->first, kSteps)
      << "the run ended before the notice reached it; make kSteps larger";
  std::printf("notice after %zu steps; checkpointed at step %lld; requeued\n", steps_before,
              static_cast<long long>(checkpointed.rbegin()->first));
  // Slurm delays a requeued job's start (BeginTime, ~2 min): start it now, once the node has
  // let the first run go. Job credentials are stamped to the second: one issued in the second
  // the previous one was revoked is refused ("Job credential revoked").
  EXPECT_TRUE(waitUntil([] { return trimmed(sh("sinfo -h -o %T").output) == "idle"; }, 60));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_EQ(sh("scontrol update JobId=" + id + " StartTime=now").exit_code, 0);
  ASSERT_EQ(job.wait_for(std::chrono::seconds(600)), std::future_status::ready);
  const ProcessResult r = job.get();
  const double seconds = secondsSince(t0);
  const std::string log = readFile(jobLog("loom-preempted", id));
  ASSERT_EQ(r.exit_code, 0) << r.output << "\njob log:\n" << log;
  std::printf("preempted job %s: %.1f s in all\n%s", id.c_str(), seconds, storyOf(log).c_str());

  // The story, in the job's log: notice, checkpoint, requeue, second start, resume, end.
  size_t at = 0;
  for (const std::string& mark :
       {std::string("restart 0 on"), std::string("SIGUSR1 received"),
        std::string("signal 10 received: checkpointing at step"), std::string("checkpoint "),
        std::string("requeueing job " + id), std::string("restart 1 on"),
        std::string("job: slurm job " + id + " 'loom-preempted', restart 1"),
        std::string("resumed from"), std::string("training finished")}) {
    const size_t found = log.find(mark, at);
    ASSERT_NE(found, std::string::npos) << "'" << mark << "' after offset " << at << ":\n" << log;
    at = found;
  }
  EXPECT_EQ(restartCounts(id), (std::vector<int64_t>{0, 1}));
  EXPECT_NE(readFile(runDir(id) / "config.yaml").find("restart_count 1"), std::string::npos);

  // Bit for bit: every step's loss, and the adapter file itself.
  const auto a = losses(plain_job_);
  const auto b = losses(id);
  ASSERT_EQ(b.size(), static_cast<size_t>(kSteps));
  for (int64_t step = 1; step <= kSteps; ++step) {
    ASSERT_TRUE(a.count(step) && b.count(step)) << step;
    EXPECT_EQ(a.at(step), b.at(step)) << "step " << step << " (bitwise)";
  }
  const std::string plain = readFile(runDir(plain_job_) / "adapter" / "adapter_model.safetensors");
  const std::string resumed = readFile(runDir(id) / "adapter" / "adapter_model.safetensors");
  EXPECT_FALSE(plain.empty());
  EXPECT_TRUE(plain == resumed) << "adapters differ";
  std::printf("adapter_model.safetensors: plain job %s and preempted job %s: %zu bytes each, %s\n",
              plain_job_.c_str(), id.c_str(), plain.size(),
              plain == resumed ? "identical" : "DIFFERENT");
}

}  // namespace
}  // namespace loom
