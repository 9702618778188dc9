#include "loom/train/checkpoint.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>
#include <type_traits>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/core/log.hpp"
#include "loom/core/strings.hpp"
#include "loom/core/text_encoding.hpp"

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

/// Where a checkpoint being replaced waits, on filesystems without an atomic exchange,
/// until its successor is in place (replaceCheckpoint).
const char* kReplacedSuffix = ".replaced";

std::vector<std::pair<int64_t, fs::path>> listCheckpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_directory()) continue;
    std::string name = entry.path().filename().string();
    // ".step-N.replaced" whose step-N is missing: the replacement crashed between its two
    // renames, and this is the complete old checkpoint.
    const std::string suffix = kReplacedSuffix;
    const bool replaced =
        name.size() > suffix.size() + 1 && name[0] == '.' && endsWith(name, suffix);
    if (replaced) {
      name = name.substr(1, name.size() - 1 - suffix.size());
      if (fs::exists(dir / name)) continue;
    }
    auto step = stepOf(dir / name);
    if (step && fs::exists(entry.path() / "trainer_state.json"))
      out.emplace_back(*step, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Test hooks, once the new checkpoint is written and synced, before it takes the place of
/// the old one: LOOM_TEST_SLOW_CHECKPOINT_S=S sleeps S seconds there (a checkpoint that takes
/// long to write); LOOM_TEST_CRASH_BEFORE_SWAP=1 dies by SIGKILL there.
void testHooksBeforeSwap() {
  if (const char* slow = std::getenv("LOOM_TEST_SLOW_CHECKPOINT_S")) {
    std::this_thread::sleep_for(std::chrono::duration<double>(std::atof(slow)));
  }
  if (std::getenv("LOOM_TEST_CRASH_BEFORE_SWAP")) ::raise(SIGKILL);
}

/// Puts the complete folder `fresh` at `target` (same parent). An existing `target` is given
/// up only once `fresh` is in its place: swapped atomically where Linux can
/// (renameat2 RENAME_EXCHANGE), else moved aside to ".<name>.replaced" (which
/// listCheckpoints reads as the checkpoint while `target` is missing) and removed last.
void replaceCheckpoint(const fs::path& fresh, const fs::path& target) {
  const fs::path parent = target.parent_path();
  const fs::path aside = parent / ("." + target.filename().string() + kReplacedSuffix);
  if (!fs::exists(target)) {
    fs::rename(fresh, target);
    fsyncPath(parent);
    removeTree(aside);  // left by a replacement that crashed between its renames
    return;
  }
  if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    fsyncPath(parent);
    removeTree(fresh);  // now the old checkpoint
    return;
  }
  removeTree(aside);
  fs::rename(target, aside);
  fs::rename(fresh, target);
  fsyncPath(parent);
  removeTree(aside);
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
  if (!resume_settings.empty()) j["resume_settings"] = resume_settings;
  return j.dump(2) + "\n";
}

TrainerState TrainerState::fromJson(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source + ": not valid JSON: " + printableText(e.what()));
  }
  LOOM_INPUT_CHECK(j.is_object() && j.value("format", "") == "loom-trainer-state",
                   source << ": not a Loom trainer state (key 'format')");
  // Each key by name: what it must hold, and whether the value is in range.
  auto get = [&](const char* key, const char* expected, auto&& valid, auto& out) {
    using T = std::decay_t<decltype(out)>;
    bool ok = j.contains(key);
    if (ok) {
      try {
        out = j.at(key).get<T>();
        ok = valid(out);
      } catch (const nlohmann::json::exception&) {
        ok = false;
      }
    }
    LOOM_INPUT_CHECK(ok, source << ": key '" << key << "' should be " << expected << ", found "
                                << (j.contains(key) ? printableText(j.at(key).dump()) : "none"));
  };
  auto any = [](const auto&) { return true; };
  TrainerState s;
  get(
      "step", "a non-negative integer", [](int64_t v) { return v >= 0; }, s.step);
  LOOM_INPUT_CHECK(j.contains("cursor") && j.at("cursor").is_object(),
                   source << ": key 'cursor' should be the planner's cursor (an object)");
  s.cursor = j.at("cursor").dump();
  get(
      "weights", "a list of positive numbers (the balancer's rank weights)",
      [](const std::vector<double>& w) {
        return std::all_of(w.begin(), w.end(), [](double x) { return std::isfinite(x) && x > 0; });
      },
      s.weights);
  get(
      "loss_scale", "a positive number", [](double v) { return std::isfinite(v) && v > 0; },
      s.loss_scale);
  if (j.contains("loss_scale_good_steps")) {
    get(
        "loss_scale_good_steps", "a non-negative integer", [](int64_t v) { return v >= 0; },
        s.loss_scale_good_steps);
  }
  get("config_hash", "a string", any, s.config_hash);
  get(
      "world_size", "a positive integer", [](int v) { return v > 0; }, s.world_size);
  if (j.contains("resume_settings")) {
    get("resume_settings", "an object of strings", any, s.resume_settings);
  }
  return s;
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
    testHooksBeforeSwap();
    replaceCheckpoint(tmp, final_dir);  // a rerun of the same step replaces it
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
