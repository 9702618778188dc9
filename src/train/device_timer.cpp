#include "loom/train/device_timer.hpp"

#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

namespace loom {

void waitForCurrentStream(const c10::Device& device) {
  if (device.is_cpu()) return;
  c10::impl::VirtualGuardImpl impl(device.type());
  impl.getStream(device).synchronize();
}

struct DeviceTimer::Events {
  explicit Events(c10::DeviceType type)
      : start(type, c10::EventFlag::BACKEND_DEFAULT), stop(type, c10::EventFlag::BACKEND_DEFAULT) {}
  c10::Event start, stop;  // BACKEND_DEFAULT: timing enabled
};

DeviceTimer::DeviceTimer(const c10::Device& device) : device_(device) {
  if (device_.is_cuda()) events_ = std::make_unique<Events>(device_.type());
}

DeviceTimer::~DeviceTimer() = default;

void DeviceTimer::start() {
  if (events_) {
    c10::impl::VirtualGuardImpl impl(device_.type());
    events_->start.record(impl.getStream(device_));
  } else {
    start_ = std::chrono::steady_clock::now();
  }
}

void DeviceTimer::stop() {
  if (events_) {
    c10::impl::VirtualGuardImpl impl(device_.type());
    events_->stop.record(impl.getStream(device_));
  } else {
    stop_ = std::chrono::steady_clock::now();
  }
}

double DeviceTimer::seconds() const {
  if (!events_) return std::chrono::duration<double>(stop_ - start_).count();
  events_->stop.synchronize();
  return events_->start.elapsedTime(events_->stop) / 1000.0;  // ms
}

}  // namespace loom
