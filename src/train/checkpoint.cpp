#include "loom/train/checkpoint.hpp"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/log.hpp"

namespace loom {

namespace fs = std::filesystem;

namespace {

/// N for a folder named "step-N". Parsed by hand, not with std::regex: libtorch carries
/// its own instantiations of libstdc++'s regex internals, and on a machine whose compiler
/// differs from the one torch was built with, the mixed instantiations crashed (a call
/// through a null std::function inside the matcher, seen on the H100 machine).
std::optional<int64_t> stepOf(const fs::path& dir) {
  const std::string name = dir.filename().string();
  const std::string prefix = "step-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

std::vector<std::pair<int64_t, fs::path>> listCheckpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_directory()) continue;
    auto step = stepOf(entry.path());
    if (step && fs::exists(entry.path() / "trainer_state.json"))
      out.emplace_back(*step, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string TrainerState::toJson() const {
  nlohmann::json j = {{"format", "loom-trainer-state"},
                      {"version", 1},
                      {"step", step},
                      {"cursor", nlohmann::json::parse(cursor)},
                      {"weights", weights},
                      {"loss_scale", loss_scale},
                      {"loss_scale_good_steps", loss_scale_good_steps},
                      {"config_hash", config_hash},
                      {"world_size", world_size}};
  return j.dump(2) + "\n";
}

TrainerState TrainerState::fromJson(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source + ": not valid JSON: " + e.what());
  }
  TrainerState s;
  try {
    LOOM_INPUT_CHECK(j.value("format", "") == "loom-trainer-state",
                     source << ": not a Loom trainer state (key 'format')");
    s.step = j.at("step").get<int64_t>();
    s.cursor = j.at("cursor").dump();
    s.weights = j.at("weights").get<std::vector<double>>();
    s.loss_scale = j.at("loss_scale").get<double>();
    s.loss_scale_good_steps = j.value("loss_scale_good_steps", int64_t{0});
    s.config_hash = j.at("config_hash").get<std::string>();
    s.world_size = j.at("world_size").get<int>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source + ": missing or mistyped key: " + e.what());
  }
  return s;
}

namespace {
int fsyncEntry(const char* path, const struct stat*, int, struct FTW*) {
  fsyncPath(path);
  return 0;
}
}  // namespace

void fsyncTree(const fs::path& dir) {
  // nftw rather than std::filesystem's recursive iterator: see removeTree (core/file_util).
  ::nftw(dir.c_str(), fsyncEntry, 32, FTW_PHYS);
}

fs::path writeCheckpoint(const fs::path& checkpoints_dir, const TrainerState& state, int64_t keep,
                         const std::function<void(const fs::path&)>& write_files) {
  fs::create_directories(checkpoints_dir);
  const fs::path final_dir = checkpoints_dir / ("step-" + std::to_string(state.step));
  const fs::path tmp = checkpoints_dir / (".step-" + std::to_string(state.step) + ".tmp-" +
                                          std::to_string(::getpid()));
  removeTree(tmp);
  fs::create_directories(tmp);
  try {
    write_files(tmp);
    writeFileAtomic(tmp / "trainer_state.json", state.toJson());
    fsyncTree(tmp);
    if (fs::exists(final_dir)) removeTree(final_dir);  // a rerun of the same step
    fs::rename(tmp, final_dir);
    fsyncPath(checkpoints_dir);
  } catch (...) {
    removeTree(tmp);
    throw;
  }
  auto all = listCheckpoints(checkpoints_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    removeTree(all[i].second);
  }
  return final_dir;
}

std::optional<fs::path> newestCheckpoint(const fs::path& checkpoints_dir) {
  auto all = listCheckpoints(checkpoints_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

TrainerState readTrainerState(const fs::path& dir) {
  const fs::path file = dir / "trainer_state.json";
  return TrainerState::fromJson(readFileOrThrow(file, "checkpoint state"), file.string());
}

}  // namespace loom
