#include "loom/train/cpu_memory.hpp"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

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

/// Counts the bytes of every CPU allocation. Each block carries its size in a header before
/// the data, so the data pointer is its own context: raw_allocate() (which some CPU kernels
/// use, e.g. fp16 matrix products) requires that.
class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    auto* raw = static_cast<char*>(c10::alloc_cpu(n + kHeader));
    *reinterpret_cast<int64_t*>(raw) = static_cast<int64_t>(n);
    add(static_cast<int64_t>(n));
    void* data = raw + kHeader;
    return {data, data, &release, c10::Device(c10::kCPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

 private:
  // Keeps the data at the 64-byte alignment alloc_cpu gives the block.
  static constexpr size_t kHeader = 64;
  static void release(void* data) {
    if (!data) return;
    auto* raw = static_cast<char*>(data) - kHeader;
    g_current.fetch_sub(*reinterpret_cast<int64_t*>(raw));
    c10::free_cpu(raw);
  }
};

}  // namespace
}  // namespace detail

void trackCpuTensorMemory() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Never destroyed: tensors may outlive any scope that would own it.
    static auto* allocator = new detail::CountingAllocator();
    c10::SetCPUAllocator(allocator, /*priority=*/100);
    detail::g_installed = true;
  });
}

bool cpuTensorMemoryTracked() { return detail::g_installed.load(); }
int64_t cpuTensorBytes() { return detail::g_current.load(); }
int64_t cpuPeakTensorBytes() { return detail::g_peak.load(); }
void resetCpuPeakTensorBytes() { detail::g_peak = detail::g_current.load(); }

}  // namespace loom
