#pragma once
// A pool of threads that runs fn(0..count-1) for one job at a time, while the caller does
// other work (e.g. `trainer prepare` reads chunk k+1 and writes chunk k-1 while the pool
// tokenizes chunk k).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace loom {

class WorkerPool {
 public:
  /// Starts `threads` workers (at least one).
  explicit WorkerPool(int threads);
  /// Abandons the items not yet started and joins (the data the job reads must outlive it).
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Starts fn(i) for i in [0, count); the previous job must be finished. fn must not throw.
  void start(size_t count, std::function<void(size_t)> fn);

  /// True when every item of the current job is done; waits at most `timeout` for that.
  bool waitFor(std::chrono::milliseconds timeout);

 private:
  // A job is shared with the workers, so a worker that wakes late for an old job only finds
  // it finished; start() never touches what a running worker reads.
  struct Job {
    size_t count = 0;
    std::function<void(size_t)> fn;
    std::atomic<size_t> next{0};
    size_t completed = 0;  // under mutex_
    std::atomic<bool> cancelled{false};
  };

  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace loom
