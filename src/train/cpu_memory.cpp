#include "loom/train/cpu_memory.hpp"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace loom {
namespace detail {
namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<bool> g_installed{false};

void add(int64_t n) {
  const int64_t now = g_current.fetch_add(n) + n;
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) override {
    auto* ctx = new Context{base_->allocate(n), static_cast<int64_t>(n)};
    add(ctx->bytes);
    return {ctx->inner.get(), ctx, &release, c10::Device(c10::kCPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

 private:
  struct Context {
    c10::DataPtr inner;
    int64_t bytes;
  };
  static void release(void* p) {
    auto* ctx = static_cast<Context*>(p);
    g_current.fetch_sub(ctx->bytes);
    delete ctx;  // frees through the wrapped allocator's deleter
  }
  c10::Allocator* base_;
};

}  // namespace
}  // namespace detail

void trackCpuTensorMemory() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Never destroyed: tensors may outlive any scope that would own it.
    static auto* allocator = new detail::CountingAllocator(c10::GetCPUAllocator());
    c10::SetCPUAllocator(allocator, /*priority=*/100);
    detail::g_installed = true;
  });
}

bool cpuTensorMemoryTracked() { return detail::g_installed.load(); }
int64_t cpuTensorBytes() { return detail::g_current.load(); }
int64_t cpuPeakTensorBytes() { return detail::g_peak.load(); }
void resetCpuPeakTensorBytes() { detail::g_peak = detail::g_current.load(); }

}  // namespace loom
