// cluster/slurm/train.sbatch without a cluster (label unit): its syntax, its #SBATCH header,
// and its launch logic run by bash with a fake `srun` (or `mpirun`) and `scontrol` on PATH
// that record how they were called, for a 2 nodes x 4 GPUs allocation as sbatch describes
// it in the environment. The real thing (a single-node Slurm) is slurm_test.cpp.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/test_support.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using testing::readFile;
using testing::TempDir;

fs::path templatePath() { return testing::sourceDir() / "cluster" / "slurm" / "train.sbatch"; }

/// A fake srun/mpirun: writes its arguments, one per line, and the environment the ranks
/// would get to $FAKE_LOG, then behaves as $FAKE_MODE says: "exit" returns 0 at once,
/// "fail" returns 3, "wait" waits for USR1 (as srun forwards it) and then exits with
/// $FAKE_ON_USR1.
const char* kFakeLauncher = R"SH(#!/usr/bin/env bash
{
  echo "launcher=$(basename "$0")"
  for a in "$@"; do echo "arg=$a"; done
  echo "env HDF5_USE_FILE_LOCKING=$HDF5_USE_FILE_LOCKING OMP_NUM_THREADS=$OMP_NUM_THREADS"
} >>"$FAKE_LOG"
case "$FAKE_MODE" in
  exit) exit 0 ;;
  fail) exit 3 ;;
  wait)
    trap 'echo "launcher got USR1" >>"$FAKE_LOG"; exit "$FAKE_ON_USR1"' USR1
    touch "$FAKE_LOG.started"
    for ((i = 0; i < 600; i++)); do sleep 0.1; done
    exit 9 ;;
esac
)SH";

const char* kFakeScontrol = R"SH(#!/usr/bin/env bash
echo "scontrol $*" >>"$FAKE_LOG"
)SH";

struct FakeCluster {
  TempDir dir{"loom-sbatch"};
  fs::path log = dir.path() / "calls.log";
  fs::path config = dir.write("run.yaml", "# not read: the trainer is faked\n");

  FakeCluster() {
    for (const char* name : {"srun", "mpirun"}) install(name, kFakeLauncher);
    install("scontrol", kFakeScontrol);
  }
  void install(const std::string& name, const std::string& text) {
    const fs::path p = dir.write("bin/" + name, text);
    ::chmod(p.c_str(), 0755);
  }
  /// `env` arguments for a 2 nodes x 4 GPUs job, as sbatch sets them.
  std::vector<std::string> env(const std::string& mode, const std::string& on_usr1 = "0") const {
    return {"env",
            "PATH=" + (dir.path() / "bin").string() + ":" + std::getenv("PATH"),
            "FAKE_LOG=" + log.string(),
            "FAKE_MODE=" + mode,
            "FAKE_ON_USR1=" + on_usr1,
            "SLURM_JOB_ID=4242",
            "SLURM_SUBMIT_DIR=" + dir.path().string(),
            "SLURM_JOB_NUM_NODES=2",
            "SLURM_NNODES=2",
            "SLURM_NTASKS=8",
            "SLURM_NTASKS_PER_NODE=4",
            "SLURM_CPUS_PER_TASK=8",
            "SLURM_GPUS_PER_TASK=1",
            "SLURM_JOB_NODELIST=gpu[01-02]",
            "LOOM_TRAINER=/bin/true"};
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::istringstream in(fs::exists(log) ? readFile(log) : std::string());
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  std::vector<std::string> args() const {
    std::vector<std::string> out;
    for (const auto& l : lines()) {
      if (l.rfind("arg=", 0) == 0) out.push_back(l.substr(4));
    }
    return out;
  }
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

TEST(SbatchTemplate, IsValidBash) {
  const auto r = testing::runProcess({"bash", "-n", templatePath().string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(SbatchTemplate, HeaderAsksForOneTaskPerGpuPreemptionNoticeAndRequeue) {
  std::vector<std::string> directives;
  std::istringstream in(readFile(templatePath()));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("#SBATCH ", 0) != 0) continue;
    std::istringstream words(line.substr(8));
    std::string option;
    words >> option;
    directives.push_back(option);
  }
  for (const char* wanted : {"--ntasks-per-node=4", "--gpus-per-task=1", "--signal=B:USR1@120",
                             "--requeue", "--open-mode=append", "--nodes=1"}) {
    EXPECT_TRUE(contains(directives, wanted)) << wanted << " in " << joined(directives);
  }
}

TEST(SbatchTemplate, SrunStartsOneRankPerGpuOnTwoNodesOfFour) {
  FakeCluster c;
  auto argv = c.env("exit");
  argv.insert(argv.end(),
              {"bash", templatePath().string(), c.config.string(), "--set", "train.max_steps=5"});
  const auto r = testing::runProcess(argv);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto args = c.args();
  EXPECT_EQ(joined(args),
            "--mpi=pmix --kill-on-bad-exit=1 --nodes=2 --ntasks=8 --ntasks-per-node=4 "
            "--cpus-per-task=8 --gpus-per-task=1 /bin/true --config " +
                c.config.string() + " --set train.max_steps=5")
      << r.output;
  EXPECT_TRUE(contains(c.lines(), "launcher=srun"));
  EXPECT_TRUE(contains(c.lines(), "env HDF5_USE_FILE_LOCKING=FALSE OMP_NUM_THREADS=8"));
  for (const auto& l : c.lines()) EXPECT_EQ(l.find("scontrol"), std::string::npos) << l;
  EXPECT_NE(r.output.find("8 rank(s), 2 node(s) x 4, 8 CPU(s) and 1 GPU(s) per rank"),
            std::string::npos)
      << r.output;
}

TEST(SbatchTemplate, MpirunInsideTheAllocationPlacesFourRanksPerNode) {
  FakeCluster c;
  auto argv = c.env("exit");
  argv.insert(argv.end(), {"LOOM_LAUNCHER=mpirun", "LOOM_OUTPUT_DIR=/shared/runs/${SLURM_JOB_ID}",
                           "bash", templatePath().string(), c.config.string()});
  const auto r = testing::runProcess(argv);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(c.lines(), "launcher=mpirun"));
  EXPECT_EQ(joined(c.args()),
            "-np 8 --map-by ppr:4:node --bind-to none -x HDF5_USE_FILE_LOCKING -x "
            "OMP_NUM_THREADS /bin/true --config " +
                c.config.string() + " --set run.output_dir=/shared/runs/${SLURM_JOB_ID}")
      << r.output;
}

TEST(SbatchTemplate, AHeterogeneousJobIsOneStepOverEveryComponent) {
  FakeCluster c;
  auto argv = c.env("exit");
  argv.insert(argv.end(), {"SLURM_HET_SIZE=2", "bash", templatePath().string(), c.config.string()});
  const auto r = testing::runProcess(argv);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(
      joined(c.args()),
      "--mpi=pmix --kill-on-bad-exit=1 --het-group=0-1 /bin/true --config " + c.config.string())
      << r.output;
  // The hetjob example hands over to the template itself.
  const std::string het =
      readFile(testing::sourceDir() / "cluster" / "slurm" / "train_hetjob.sbatch");
  EXPECT_NE(het.find("#SBATCH hetjob"), std::string::npos);
  EXPECT_NE(het.find("cluster/slurm/train.sbatch"), std::string::npos);
  EXPECT_EQ(testing::runProcess(
                {"bash", "-n",
                 (testing::sourceDir() / "cluster" / "slurm" / "train_hetjob.sbatch").string()})
                .exit_code,
            0);
}

TEST(SbatchTemplate, FailureIsPassedOnAndNotRequeued) {
  FakeCluster c;
  auto argv = c.env("fail");
  argv.insert(argv.end(), {"bash", templatePath().string(), c.config.string()});
  const auto r = testing::runProcess(argv);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  for (const auto& l : c.lines()) EXPECT_EQ(l.find("scontrol"), std::string::npos) << l;
}

/// Runs the template in the background, sends it USR1 once the launcher runs (as
/// `--signal=B:USR1@120` or `scancel --batch --signal=USR1` would), and returns its exit code.
int preemptTemplate(const FakeCluster& c, const std::string& on_usr1, std::string& output) {
  auto argv = c.env("wait", on_usr1);
  argv.insert(argv.end(), {"bash", templatePath().string(), c.config.string()});
  const fs::path out = c.dir.path() / "template.out";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  const fs::path started = c.log.string() + ".started";
  for (int i = 0; i < 300 && !fs::exists(started); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(fs::exists(started)) << "the fake srun never started";
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the script is in `wait`
  ::kill(pid, SIGUSR1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  output = readFile(out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(SbatchTemplate, PreemptionNoticeReachesTheRanksThenTheJobRequeuesItself) {
  FakeCluster c;
  std::string output;
  EXPECT_EQ(preemptTemplate(c, "0", output), 0) << output;
  EXPECT_TRUE(contains(c.lines(), "launcher got USR1")) << readFile(c.log);
  EXPECT_TRUE(contains(c.lines(), "scontrol requeue 4242")) << readFile(c.log);
  EXPECT_NE(output.find("SIGUSR1 received"), std::string::npos) << output;
  EXPECT_NE(output.find("requeueing job 4242"), std::string::npos) << output;
}

TEST(SbatchTemplate, RanksFailingAfterTheNoticeAreNotRequeued) {
  FakeCluster c;
  std::string output;
  EXPECT_EQ(preemptTemplate(c, "1", output), 1) << output;
  EXPECT_TRUE(contains(c.lines(), "launcher got USR1")) << readFile(c.log);
  for (const auto& l : c.lines()) EXPECT_EQ(l.find("scontrol"), std::string::npos) << l;
  EXPECT_NE(output.find("not requeueing"), std::string::npos) << output;
}

}  // namespace
}  // namespace loom
