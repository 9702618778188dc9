// runTraining, the entry point: one Trainer (trainer_impl.hpp) per rank, and its run(), which
// installs the stop-signal handler, takes the set-up stages in order and then the loop.
#include "loom/train/trainer.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <optional>

#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "trainer_impl.hpp"

namespace loom {
namespace detail {

std::atomic<int> g_stop_signal{0};

namespace {

extern "C" void onStopSignal(int sig) { g_stop_signal = sig; }

}  // namespace

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int Trainer::run() {
  // First thing: a stop signal during set-up (Slurm's notice, Ctrl-C, kill) must not kill
  // the process mid-write; it ends the run cleanly at the next set-up stage instead.
  std::signal(SIGTERM, onStopSignal);
  std::signal(SIGUSR1, onStopSignal);
  std::signal(SIGINT, onStopSignal);
  signalForTest("setup");
  setupRanks();
  if (stopRequested("start")) return kExitOk;
  setupModel();
  if (stopRequested("loading the model")) return kExitOk;
  setupData();
  const std::optional<fs::path> resume = checkpointToResume();
  checkAgreement(resume);
  setupOptimizer();
  if (resume) resumeFrom(*resume);
  if (stopRequested("opening the data")) return kExitOk;
  writeRunRecord();
  if (config_.cluster.balance == Balance::kAuto && !weights_restored_) probeBalance();
  return loop();
}

}  // namespace detail

int runTraining(World& world, const Config& config) {
  detail::Trainer trainer(world, config);
  return trainer.run();
}

}  // namespace loom
