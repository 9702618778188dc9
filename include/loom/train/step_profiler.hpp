#pragma once
// A window of training steps traced with torch's profiler (Kineto; CUPTI on CUDA), per rank:
// train.profile_steps steps from train.profile_start. Writes, into <run>/profile/,
// rank-<k>.trace.json (a Chrome trace: Perfetto or chrome://tracing) and rank-<k>.txt, a
// table of where the time went: device kernels by total time, how busy the device was, and
// host operators by self time. The traced steps' times include the profiler's overhead.

#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace loom {

/// One profiled event, as the table needs it (kept apart from torch's types for tests).
struct ProfiledEvent {
  std::string name;
  bool on_device = false;  ///< a kernel, copy or set on the device (else a host operator)
  uint64_t thread = 0;     ///< host thread (host events nest per thread)
  uint64_t start_ns = 0, end_ns = 0;
};

/// The table of rank-<k>.txt: device kernels by total time (with the device's busy time, the
/// union of its intervals, against `wall_ns`), then host operators by self time (their time
/// less that of the host events nested in them on the same thread). `top` rows each.
std::string profileTable(const std::vector<ProfiledEvent>& events, uint64_t wall_ns, int top);

class StepProfiler {
 public:
  /// Steps are numbered from 1; `steps` == 0 makes a profiler that does nothing.
  StepProfiler(std::filesystem::path dir, int rank, const c10::Device& device, int64_t start,
               int64_t steps);
  ~StepProfiler();
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  /// Before step `step` runs: starts tracing at the window's first step (after waiting for
  /// the device, so earlier work stays out of the window).
  void beforeStep(int64_t step);
  /// After step `step` ran: at the window's last step waits for the device, stops tracing,
  /// writes the trace and the table, and returns the path of the table (else empty).
  std::filesystem::path afterStep(int64_t step);

 private:
  std::filesystem::path dir_;
  int rank_;
  c10::Device device_;
  int64_t start_, steps_;
  bool tracing_ = false;
};

}  // namespace loom
