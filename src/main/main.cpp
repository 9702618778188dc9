// trainer: the command line of Loom. Parses arguments, builds the World, and hands over to
// the library; nothing here knows how training works.
//
//   trainer --config FILE [--set key.path=value ...] [--print-config | --dry-run]
//   trainer --version
//
// Exit codes: 0 success, 1 failure, 2 bad input (config, data, checkpoint, command line).

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "loom/comm/device.hpp"
#include "loom/comm/rank_settings.hpp"
#include "loom/comm/world.hpp"
#include "loom/config/config.hpp"
#include "loom/core/error.hpp"
#include "loom/core/error_message.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/log.hpp"
#include "loom/train/model_setup.hpp"
#include "loom/train/trainer.hpp"

namespace {

struct Options {
  std::string config_path;
  std::vector<std::string> overrides;
  bool print_config = false;
  bool dry_run = false;
  std::string log_level = "info";
};

/// Loads the config on every rank; if any rank fails, every rank learns it and exits with
/// code 2 (the failing ranks print why), so nobody is left waiting in a collective.
std::optional<loom::Config> loadConfigCollectively(const loom::World& world, const Options& opt) {
  std::optional<loom::Config> config;
  std::string error;
  try {
    config = loom::loadConfig(opt.config_path, opt.overrides);
  } catch (const loom::InputError& e) {
    error = e.what();
  }
  const bool failed_anywhere = world.anyTrue(!error.empty());
  if (!error.empty()) {
    // Every rank reads the same file, so one copy of the message is enough; a rank whose
    // message differs (a file missing on its host only) still prints its own.
    const auto all = world.allGather(error);
    if (world.rank() == 0 || all[0] != error) std::cerr << "trainer: " << error << std::endl;
  } else if (failed_anywhere) {
    world.allGather("");
  }
  if (failed_anywhere) return std::nullopt;
  return config;
}

/// Each rank's memory estimate against its device's free memory (collective).
void printMemoryEstimate(const loom::World& world, const loom::Config& config,
                         const std::vector<loom::RankSettings>& ranks) {
  // Every rank reads the same model config: a bad model.path fails on all of them alike.
  loom::WorldMemory memory;
  try {
    memory = loom::gatherWorldMemory(world, config, ranks);
  } catch (const loom::InputError& e) {
    if (world.isRoot()) std::printf("memory estimate: not available (%s)\n", e.what());
    return;
  }
  if (!world.isRoot()) return;
  std::printf("memory estimate per rank (tensors at the peak of a step; CUDA adds its context):\n");
  for (const auto& line : memory.lines) std::printf("  %s\n", line.c_str());
  for (const auto& w : memory.warnings) {
    if (!w.empty()) std::printf("warning: %s\n", w.c_str());
  }
  std::fflush(stdout);
}

int dryRun(const loom::World& world, const loom::Config& config) {
  const auto gpus = loom::listCudaDevices();
  std::string mine;
  std::string error;
  try {
    mine = loom::resolveRankSettings(config, world.rank(), world.localRank(), world.host(), gpus)
               .toJson();
  } catch (const loom::InputError& e) {
    error = e.what();
  }
  if (world.anyTrue(!error.empty())) {
    if (!error.empty()) std::cerr << "trainer: rank " << world.rank() << ": " << error << std::endl;
    return loom::kExitBadInput;
  }
  std::vector<loom::RankSettings> ranks;
  for (const auto& j : world.allGather(mine)) ranks.push_back(loom::RankSettings::fromJson(j));
  const loom::Backend backend = loom::resolveBackend(config, ranks);
  if (world.isRoot()) {
    std::printf("world: %d rank(s), backend %s, balance %s\n", world.size(),
                loom::toString(backend).c_str(), loom::toString(config.cluster.balance).c_str());
    std::printf("%-5s %-20s %-10s %-8s %-28s %-7s %-7s %-11s %s\n", "rank", "host", "local_rank",
                "device", "gpu", "backend", "weight", "micro_batch", "dtype");
    for (const auto& r : ranks) {
      std::printf("%-5d %-20s %-10d %-8s %-28s %-7s %-7.3f %-11lld %s%s\n", r.rank, r.host.c_str(),
                  r.local_rank, r.device.c_str(), r.gpu_name.empty() ? "-" : r.gpu_name.c_str(),
                  loom::toString(backend).c_str(), r.weight, static_cast<long long>(r.micro_batch),
                  loom::toString(r.dtype).c_str(),
                  r.dtype_note.empty() ? "" : ("  (" + r.dtype_note + ")").c_str());
    }
    std::fflush(stdout);
  }
  printMemoryEstimate(world, config, ranks);
  return loom::kExitOk;
}

int run(loom::World& world, const Options& opt) {
  auto config = loadConfigCollectively(world, opt);
  if (!config) return loom::kExitBadInput;
  world.setCollectiveTimeout(config->cluster.collective_timeout_s);
  if (opt.print_config) {
    if (world.isRoot()) std::cout << loom::toYaml(*config) << std::flush;
    return loom::kExitOk;
  }
  if (opt.dry_run) return dryRun(world, *config);

  return loom::runTraining(world, *config);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Loom: data-parallel LoRA / full fine-tuning of Hugging Face decoder LLMs.\n"
      "Launch with `mpirun -np N trainer --config FILE`; one rank per GPU (or CPU).",
      "trainer"};
  Options opt;
  app.set_version_flag("--version", std::string("trainer (Loom) ") + LOOM_VERSION);
  app.add_option("--config,-c", opt.config_path, "run configuration (YAML)")
      ->check(CLI::ExistingFile);
  app.add_option("--set", opt.overrides,
                 "override a config key, validated like the file: --set train.lr=3e-4 (repeatable)")
      ->allow_extra_args(false);
  app.add_flag("--print-config", opt.print_config, "print the resolved config and exit");
  app.add_flag("--dry-run", opt.dry_run,
               "build the world and print, per rank, host, local rank, device, backend and weight");
  app.add_option("--log-level", opt.log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str();
  app.footer("Exit codes: 0 ok, 1 failure, 2 bad input (config, data, command line).");
  // Subcommands run without MPI; the bare `trainer --config` form is the training job.
  std::vector<loom::cli::Command> commands = {
      loom::cli::addPrepareCommand(app),  loom::cli::addInspectCommand(app),
      loom::cli::addEvalCommand(app),     loom::cli::addExportCommand(app),
      loom::cli::addGenerateCommand(app), loom::cli::addCompareCommand(app)};
  app.require_subcommand(0, 1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return loom::kExitBadInput;
  }
  for (auto& command : commands) {
    if (command.app->parsed()) {
      try {
        return command.run();
      } catch (const loom::InputError& e) {
        std::cerr << "trainer " << command.app->get_name() << ": " << e.what() << std::endl;
        return loom::kExitBadInput;
      } catch (const std::exception& e) {
        std::cerr << "trainer " << command.app->get_name() << ": error: " << loom::messageForUser(e)
                  << std::endl;
        return loom::kExitFailure;
      }
    }
  }
  if (opt.config_path.empty()) {
    std::cerr << "trainer: --config FILE is required (see trainer --help)" << std::endl;
    return loom::kExitBadInput;
  }
  loom::LogLevel level;
  try {
    level = loom::parseLogLevel(opt.log_level);
  } catch (const loom::InputError& e) {
    std::cerr << "trainer: " << e.what() << std::endl;
    return loom::kExitBadInput;
  }

  std::unique_ptr<loom::World> world;
  try {
    world = std::make_unique<loom::World>(&argc, &argv);
  } catch (const std::exception& e) {
    std::cerr << "trainer: cannot start MPI: " << loom::messageForUser(e) << std::endl;
    return loom::kExitFailure;
  }
  loom::setupLogging({world->rank(), world->size(), world->host()}, level);

  int code = loom::kExitFailure;
  try {
    code = run(*world, opt);
  } catch (const loom::InputError& e) {
    // Reached only by errors that not every rank hits together: end the whole job.
    LOOM_ERROR(e.what());
    if (world->size() > 1) world->abort(loom::kExitBadInput);
    code = loom::kExitBadInput;
  } catch (const std::exception& e) {
    LOOM_ERROR("rank " << world->rank() << " failed: " << loom::messageForUser(e));
    if (world->size() > 1) world->abort(loom::kExitFailure);
    code = loom::kExitFailure;
  }
  world.reset();
  return code;
}
