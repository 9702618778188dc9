// The background reader of a token file's samples (see Prefetcher in hdf5_dataset.hpp).

#include "loom/core/error.hpp"
#include "loom/data/hdf5_dataset.hpp"

namespace loom {

Prefetcher::Prefetcher(const Hdf5Dataset& dataset) : dataset_(dataset) {
  worker_ = std::thread([this] { run(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

std::future<SampleBatch> Prefetcher::request(std::vector<int64_t> indices) {
  Job job{std::move(indices), {}};
  auto future = job.promise.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
  return future;
}

void Prefetcher::submit(std::vector<int64_t> indices) {
  auto future = request(std::move(indices));
  std::lock_guard<std::mutex> lock(mutex_);
  submitted_.push_back(std::move(future));
}

SampleBatch Prefetcher::next() {
  std::future<SampleBatch> future;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    LOOM_CHECK(!submitted_.empty(), "Prefetcher::next() with no submitted read");
    future = std::move(submitted_.front());
    submitted_.pop_front();
  }
  return future.get();
}

int64_t Prefetcher::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(submitted_.size());
}

void Prefetcher::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    try {
      job.promise.set_value(dataset_.readSamples(job.indices));
    } catch (...) {
      job.promise.set_exception(std::current_exception());
    }
  }
}

}  // namespace loom
