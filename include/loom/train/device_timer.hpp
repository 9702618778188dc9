#pragma once
// Times the work queued on a device's current stream without waiting for it inside a step:
// start() and stop() record events (CUDA) or read the clock (CPU); seconds() waits for the
// stop event only, so the one host synchronisation happens where the caller reads it.

#include <c10/core/Device.h>

#include <chrono>
#include <memory>

namespace loom {

/// Waits for the work queued on this thread's current stream of `device` (not for other
/// streams: gradient all-reduces on a communication stream may still be running); nothing on
/// the CPU.
void waitForCurrentStream(const c10::Device& device);

class DeviceTimer {
 public:
  explicit DeviceTimer(const c10::Device& device);
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  void start();
  void stop();
  /// Seconds between start() and stop() as the device ran them (waits for stop's event).
  double seconds() const;

 private:
  struct Events;
  c10::Device device_;
  std::unique_ptr<Events> events_;  // CUDA only
  std::chrono::steady_clock::time_point start_, stop_;
};

}  // namespace loom
