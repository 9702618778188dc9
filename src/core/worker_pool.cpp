// See worker_pool.hpp.

#include "loom/core/worker_pool.hpp"

#include <algorithm>

namespace loom {

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { loop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    if (job_) job_->cancelled = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::start(size_t count, std::function<void(size_t)> fn) {
  auto job = std::make_shared<Job>();
  job->count = count;
  job->fn = std::move(fn);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = std::move(job);
    ++generation_;
  }
  wake_.notify_all();
}

bool WorkerPool::waitFor(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return done_.wait_for(lock, timeout, [&] { return !job_ || job_->completed == job_->count; });
}

void WorkerPool::loop() {
  uint64_t seen = 0;
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    size_t mine = 0;
    for (;;) {
      const size_t i = job->next.fetch_add(1);
      if (i >= job->count || job->cancelled) break;
      job->fn(i);
      ++mine;
    }
    if (mine > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      job->completed += mine;
      if (job->completed == job->count) done_.notify_all();
    }
  }
}

}  // namespace loom
