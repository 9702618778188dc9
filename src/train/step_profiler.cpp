#include "loom/train/step_profiler.hpp"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "loom/core/error.hpp"
#include "loom/core/file_util.hpp"
#include "loom/train/device_timer.hpp"

namespace loom {

namespace fs = std::filesystem;
namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

namespace {

struct Row {
  std::string name;
  uint64_t ns = 0;
  int64_t calls = 0;
};

std::vector<Row> sortedRows(const std::map<std::string, Row>& by_name) {
  std::vector<Row> rows;
  for (const auto& [name, row] : by_name) rows.push_back(row);
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.ns != b.ns ? a.ns > b.ns : a.name < b.name;
  });
  return rows;
}

std::string shortName(const std::string& name) {
  constexpr size_t kMax = 100;
  return name.size() <= kMax ? name : name.substr(0, kMax - 3) + "...";
}

/// The length of the union of the intervals.
uint64_t unionLength(std::vector<std::pair<uint64_t, uint64_t>> spans) {
  std::sort(spans.begin(), spans.end());
  uint64_t total = 0, end = 0;
  for (const auto& [s, e] : spans) {
    if (e <= end) continue;
    total += e - std::max(s, end);
    end = e;
  }
  return total;
}

/// Self time per host event: its duration less its direct children's on the same thread.
std::map<std::string, Row> hostSelfTimes(const std::vector<ProfiledEvent>& events) {
  std::map<uint64_t, std::vector<const ProfiledEvent*>> by_thread;
  for (const auto& e : events) {
    if (!e.on_device && e.end_ns >= e.start_ns) by_thread[e.thread].push_back(&e);
  }
  std::map<std::string, Row> rows;
  for (auto& [thread, list] : by_thread) {
    std::sort(list.begin(), list.end(), [](const ProfiledEvent* a, const ProfiledEvent* b) {
      return a->start_ns != b->start_ns ? a->start_ns < b->start_ns : a->end_ns > b->end_ns;
    });
    std::vector<int64_t> self(list.size());
    std::vector<size_t> stack;  // indices of the open events, innermost last
    for (size_t i = 0; i < list.size(); ++i) {
      const auto* e = list[i];
      while (!stack.empty() && list[stack.back()]->end_ns <= e->start_ns) stack.pop_back();
      self[i] = static_cast<int64_t>(e->end_ns - e->start_ns);
      if (!stack.empty()) {
        const auto* parent = list[stack.back()];
        self[stack.back()] -=
            static_cast<int64_t>(std::min(e->end_ns, parent->end_ns) - e->start_ns);
      }
      stack.push_back(i);
    }
    for (size_t i = 0; i < list.size(); ++i) {
      Row& r = rows[list[i]->name];
      r.name = list[i]->name;
      r.ns += static_cast<uint64_t>(std::max<int64_t>(self[i], 0));
      ++r.calls;
    }
  }
  return rows;
}

}  // namespace

std::string profileTable(const std::vector<ProfiledEvent>& events, uint64_t wall_ns, int top) {
  std::ostringstream o;
  o << std::fixed;
  const double wall = std::max<double>(static_cast<double>(wall_ns), 1.0);
  auto share = [&](uint64_t ns) { return 100.0 * static_cast<double>(ns) / wall; };
  // The first `top` rows: ms, share of the traced time, calls, [average us], name.
  auto printRows = [&](const std::vector<Row>& rows, bool with_average) {
    for (size_t i = 0; i < rows.size() && static_cast<int>(i) < top; ++i) {
      const Row& r = rows[i];
      o << std::setw(11) << std::setprecision(3) << static_cast<double>(r.ns) / 1e6 << std::setw(7)
        << std::setprecision(1) << share(r.ns) << "%" << std::setw(9) << r.calls;
      if (with_average) {
        o << std::setw(10) << std::setprecision(1)
          << static_cast<double>(r.ns) / 1e3 / static_cast<double>(r.calls);
      }
      o << "  " << shortName(r.name) << "\n";
    }
  };
  o << "traced: " << std::setprecision(3) << static_cast<double>(wall_ns) / 1e9 << " s\n";

  std::map<std::string, Row> kernels;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& e : events) {
    if (!e.on_device || e.end_ns < e.start_ns) continue;
    Row& r = kernels[e.name];
    r.name = e.name;
    r.ns += e.end_ns - e.start_ns;
    ++r.calls;
    spans.emplace_back(e.start_ns, e.end_ns);
  }
  if (!spans.empty()) {
    const uint64_t busy = unionLength(spans);
    o << "device: busy " << std::setprecision(3) << static_cast<double>(busy) / 1e9
      << " s = " << std::setprecision(1) << share(busy) << "% of the traced time, idle "
      << std::setprecision(3) << static_cast<double>(wall_ns > busy ? wall_ns - busy : 0) / 1e9
      << " s; " << spans.size() << " kernels, copies and sets\n"
      << "  total ms   share    calls    avg us  device kernel\n";
    printRows(sortedRows(kernels), /*with_average=*/true);
  }
  o << "host operators by self time (the training thread and autograd's):\n"
    << "   self ms   share    calls  operator\n";
  printRows(sortedRows(hostSelfTimes(events)), /*with_average=*/false);
  return o.str();
}

StepProfiler::StepProfiler(fs::path dir, int rank, const c10::Device& device, int64_t start,
                           int64_t steps)
    : dir_(std::move(dir)), rank_(rank), device_(device), start_(start), steps_(steps) {}

StepProfiler::~StepProfiler() {
  if (tracing_) {
    try {
      prof::disableProfiler();  // a run that ended (or threw) inside the window
    } catch (...) {
    }
  }
}

namespace {

std::set<ActivityType> activitiesFor(const c10::Device& device) {
  std::set<ActivityType> a{ActivityType::CPU};
  if (device.is_cuda()) a.insert(ActivityType::CUDA);
  return a;
}

}  // namespace

void StepProfiler::beforeStep(int64_t step) {
  if (steps_ <= 0 || step != start_ || tracing_) return;
  waitForCurrentStream(device_);
  // Kineto logs, as an error, that it found no GPU: only noise on a CPU rank.
  if (device_.is_cpu()) ::setenv("KINETO_LOG_LEVEL", "5", /*overwrite=*/0);
  const ProfilerConfig config(ProfilerState::KINETO);
  prof::prepareProfiler(config, activitiesFor(device_));
  prof::enableProfiler(config, activitiesFor(device_));
  tracing_ = true;
}

fs::path StepProfiler::afterStep(int64_t step) {
  if (!tracing_ || step != start_ + steps_ - 1) return {};
  waitForCurrentStream(device_);
  std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();
  tracing_ = false;
  std::vector<ProfiledEvent> events;
  uint64_t first = UINT64_MAX, last = 0;
  for (const auto& e : result->events()) {
    if (e.isAsync()) continue;
    ProfiledEvent p;
    p.name = e.name();
    p.on_device = e.deviceType() != c10::DeviceType::CPU;
    p.thread = e.startThreadId();
    p.start_ns = e.startNs();
    p.end_ns = e.endNs();
    first = std::min(first, p.start_ns);
    last = std::max(last, p.end_ns);
    events.push_back(std::move(p));
  }
  const uint64_t wall = last > first ? last - first : 0;
  fs::create_directories(dir_);
  const std::string stem = "rank-" + std::to_string(rank_);
  const fs::path trace = dir_ / (stem + ".trace.json");
  const fs::path tmp = temporarySibling(trace);
  try {
    result->save(tmp.string());
    fs::rename(tmp, trace);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);  // no half-written trace left behind
    throw;
  }
  std::ostringstream head;
  head << "profile of step" << (steps_ > 1 ? "s " : " ") << start_
       << (steps_ > 1 ? "-" + std::to_string(start_ + steps_ - 1) : "") << " on rank " << rank_
       << " (" << device_.str() << "); the Chrome trace: " << trace.filename().string() << "\n";
  const fs::path table = dir_ / (stem + ".txt");
  writeFileAtomic(table, head.str() + profileTable(events, wall, 30));
  return table;
}

}  // namespace loom
