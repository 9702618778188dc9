#include "loom/train/checkpoint.hpp"

#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/log.hpp"

namespace loom {

namespace fs = std::filesystem;

namespace {

std::optional<int64_t> stepOf(const fs::path& dir) {
  static const std::regex pattern("step-([0-9]+)");
  std::smatch m;
  const std::string name = dir.filename().string();
  if (!std::regex_match(name, m, pattern)) return std::nullopt;
  return std::stoll(m[1]);
}

std::vector<std::pair<int64_t, fs::path>> listCheckpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_directory()) continue;
    auto step = stepOf(entry.path());
    if (step && fs::exists(entry.path() / "trainer_state.json")) out.emplace_back(*step, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string TrainerState::toJson() const {
  nlohmann::json j = {{"format", "loom-trainer-state"}, {"version", 1},
                      {"step", step},                   {"cursor", nlohmann::json::parse(cursor)},
                      {"weights", weights},             {"loss_scale", loss_scale},
                      {"config_hash", config_hash},     {"world_size", world_size}};
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
    s.config_hash = j.at("config_hash").get<std::string>();
    s.world_size = j.at("world_size").get<int>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source + ": missing or mistyped key: " + e.what());
  }
  return s;
}

void fsyncTree(const fs::path& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir)) fsyncPath(entry.path());
  fsyncPath(dir);
}

fs::path writeCheckpoint(const fs::path& checkpoints_dir, const TrainerState& state, int64_t keep,
                         const std::function<void(const fs::path&)>& write_files) {
  fs::create_directories(checkpoints_dir);
  const fs::path final_dir = checkpoints_dir / ("step-" + std::to_string(state.step));
  const fs::path tmp = checkpoints_dir / (".step-" + std::to_string(state.step) + ".tmp-" +
                                          std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    write_files(tmp);
    writeFileAtomic(tmp / "trainer_state.json", state.toJson());
    fsyncTree(tmp);
    if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a rerun of the same step
    fs::rename(tmp, final_dir);
    fsyncPath(checkpoints_dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  auto all = listCheckpoints(checkpoints_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    fs::remove_all(all[i].second, ec);
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
