// Runs that are interrupted (label mpi): stop signals from the start of set-up, through
// the launcher with a checkpoint slower than Open MPI's kill delay, and a stalled peer that
// must end the job within the collective deadline instead of hanging it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <thread>

#include "training_runs.hpp"

namespace loom {
namespace {

using namespace runs;
using testing::runProcess;
using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// The environment of process `pid` ("KEY=value" entries), empty if it is gone.
std::vector<std::string> environmentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::vector<std::string> out;
  for (std::string entry; std::getline(in, entry, '\0');) out.push_back(entry);
  return out;
}

/// The processes whose environment holds every one of `entries`.
std::vector<pid_t> processesWith(const std::vector<std::string>& entries) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == ::getpid()) continue;
    const auto env = environmentOf(pid);
    bool all = !env.empty();
    for (const auto& want : entries)
      all = all && std::find(env.begin(), env.end(), want) != env.end();
    if (all) out.push_back(pid);
  }
  return out;
}

/// A command running in the background with its output in a file. Every process it starts
/// carries LOOM_TEST_RUN_TAG=<tag> in its environment (mpirun passes it on to the ranks), so
/// that whatever is left of it, in whichever session, is found and killed at the end.
class Background {
 public:
  Background(const std::string& tag, std::vector<std::string> argv) : tag_(tag) {
    log_ = fixture().dir.path() / (tag + ".log");
    argv.insert(argv.begin(), {"env", "LOOM_TEST_RUN_TAG=" + tag});
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Background() {
    for (pid_t p : processesWith({"LOOM_TEST_RUN_TAG=" + tag_})) {
      ::kill(p, SIGKILL);
      ::kill(p, SIGCONT);
    }
    if (!exit_code_) ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  /// The pid of rank `rank` of the mpirun it started, if it is running.
  std::optional<pid_t> rankPid(int rank) const {
    const auto pids = processesWith(
        {"LOOM_TEST_RUN_TAG=" + tag_, "OMPI_COMM_WORLD_RANK=" + std::to_string(rank)});
    if (pids.empty()) return std::nullopt;
    return pids.front();
  }
  /// Its exit code (128 + signal when killed), or nothing if it is still running after
  /// `seconds`.
  std::optional<int> waitExit(double seconds) {
    const auto start = Clock::now();
    while (!exit_code_ && secondsSince(start) < seconds) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    return exit_code_;
  }
  std::string output() const { return testing::readFile(log_); }

 private:
  std::string tag_;
  fs::path log_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

/// Waits (at most 120 s) until run `name` has logged `steps` steps.
bool waitForSteps(const std::string& name, size_t steps) {
  const auto start = Clock::now();
  while (losses(name).size() < steps) {
    if (secondsSince(start) > 120) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

TEST(Interruption, SigtermCheckpointsAndExitsCleanly) {
  RunSpec s{"preempted", {1}, {1}, "lora", 400};
  const fs::path config = writeConfig(s);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string trainer = testing::trainerPath();
    ::execl(trainer.c_str(), trainer.c_str(), "--config", config.c_str(), "--log-level", "warn",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait until a few steps are logged, then preempt as Slurm would.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (losses("preempted").size() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal instead of stopping cleanly";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const auto done = losses("preempted");
  const int64_t last = done.rbegin()->first;
  ASSERT_LT(last, 400);
  EXPECT_TRUE(
      fs::exists(lastCheckpoint("preempted", static_cast<int>(last)) / "trainer_state.json"));
  // The job resumes from it (shortened so the test stays quick).
  const auto r =
      runProcess({testing::trainerPath(), "--config", config.string(), "--set",
                  "train.max_steps=" + std::to_string(last + 2), "--set", "train.warmup_steps=1"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
}

TEST(Interruption, ASignalDuringSetUpExitsCleanlyWithoutACheckpoint) {
  // Rank 0 gets SIGUSR1 (Slurm's preemption notice) as set-up begins, before the model is
  // loaded: before the handlers were installed first, the signal killed the process.
  RunSpec s{"setup-signal", {1, 1}, {1, 1}, "lora", 5, 1};
  const auto r = launch(s, {"LOOM_TEST_SIGNAL_AT=setup"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("stop signal received during set-up"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(runDir(s.name) / "checkpoints"));
  EXPECT_FALSE(fs::exists(runDir(s.name) / "adapter"));
  EXPECT_FALSE(fs::exists(runDir(s.name) / "metrics.jsonl"));
  // Nothing is written into the run folder before set-up has passed (not even config.yaml).
  EXPECT_FALSE(fs::exists(runDir(s.name) / "config.yaml"));
  if (!fs::exists(runDir(s.name))) return;
  for (const auto& e : fs::directory_iterator(runDir(s.name))) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos)
        << "half-written: " << e.path();
  }
}

TEST(Interruption, AStalledRankEndsTheJobWithinTheCollectiveDeadline) {
  // Rank 1 is stopped (SIGSTOP: alive, holding its connections, never answering) mid-run.
  // Rank 0 waits in the next collective; after cluster.collective_timeout_s it says which
  // one and for how long, and the job ends with an error. Before every collective had a
  // deadline, the job hung here forever.
  const double timeout_s = 5;
  RunSpec s{"stalled", {1, 1}, {1, 1}, "lora", 5000};
  s.cluster_extra = "  collective_timeout_s: 5\n";
  Background job("stalled", {testing::requireEnv("LOOM_MPIEXEC"), "-np", "2", "--bind-to", "none",
                             testing::trainerPath(), "--config", writeConfig(s).string()});
  ASSERT_TRUE(waitForSteps(s.name, 3)) << job.output();
  const auto rank1 = job.rankPid(1);
  ASSERT_TRUE(rank1) << "rank 1's process not found";
  ASSERT_EQ(::kill(*rank1, SIGSTOP), 0);
  const auto stopped = Clock::now();
  const auto code = job.waitExit(timeout_s + 30);
  const double seconds = secondsSince(stopped);
  ASSERT_TRUE(code) << "the job still runs " << seconds << " s after rank 1 stopped:\n"
                    << job.output();
  std::printf("rank 1 stopped: the job ended %.1f s later (collective_timeout_s %.0f), exit %d\n",
              seconds, timeout_s, *code);
  EXPECT_NE(*code, 0);
  EXPECT_GE(seconds, timeout_s);
  const std::string out = job.output();
  EXPECT_NE(out.find("rank 0 (host "), std::string::npos) << out;
  EXPECT_NE(out.find(" s in MPI_"), std::string::npos) << out;
  EXPECT_NE(out.find("a peer is stalled or dead (cluster.collective_timeout_s = 5"),
            std::string::npos)
      << out;
}

TEST(Interruption, SigtermToTheLauncherOutlastsASlowCheckpointAndResumesExactly) {
  // launch/local.sh turns SIGTERM (and Ctrl-C) into SIGUSR1 for mpirun, which forwards it
  // and waits for the ranks: they finish the step, checkpoint and exit 0. The checkpoint is
  // slowed to 3 s by a test hook, longer than Open MPI gives ranks after a SIGTERM to
  // mpirun itself (SIGKILL 1 s after its SIGTERM, odls_base_sigkill_timeout): before the
  // launcher forwarded the signal this way, the checkpoint was cut off and mpirun exited 1.
  constexpr int kSteps = 150;
  RunSpec straight{"launcher-straight", {1, 1}, {1, 2}, "lora", kSteps};
  ASSERT_EQ(launch(straight).exit_code, 0);
  RunSpec s = straight;
  s.name = "launcher-stopped";
  const fs::path config = writeConfig(s);
  Background job("launcher",
                 {"env", "LOOM_TEST_SLOW_CHECKPOINT_S=3", "LOOM_TRAINER=" + testing::trainerPath(),
                  (testing::sourceDir() / "launch" / "local.sh").string(), "2", config.string()});
  ASSERT_TRUE(waitForSteps(s.name, 3)) << job.output();
  ASSERT_EQ(::kill(job.pid(), SIGTERM), 0);
  const auto signalled = Clock::now();
  const auto code = job.waitExit(120);
  ASSERT_TRUE(code) << job.output();
  std::printf("SIGTERM to launch/local.sh: exit %d after %.1f s (checkpoint slowed by 3 s)\n",
              *code, secondsSince(signalled));
  EXPECT_EQ(*code, 0) << job.output();
  const int64_t last = losses(s.name).rbegin()->first;
  ASSERT_LT(last, kSteps) << "the run ended before the signal";
  EXPECT_TRUE(fs::exists(lastCheckpoint(s.name, static_cast<int>(last)) / "trainer_state.json"))
      << job.output();
  // The rerun continues from that checkpoint and ends exactly where the straight run did.
  const auto resumed = launch(s);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  EXPECT_EQ(maxRelativeDiff(trainable(lastCheckpoint(s.name, kSteps)),
                            trainable(lastCheckpoint(straight.name, kSteps))),
            0.0);
  EXPECT_EQ(testing::readFile(runDir(s.name) / "adapter" / "adapter_model.safetensors"),
            testing::readFile(runDir(straight.name) / "adapter" / "adapter_model.safetensors"))
      << "the final adapter differs from the uninterrupted run's";
}

}  // namespace
}  // namespace loom
